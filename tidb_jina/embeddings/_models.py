"""What each Jina and Hugging Face model accepts, so payloads carry only valid fields.

Jina's embeddings API validates the request body per model family: a field that one family
accepts (``dimensions`` on v3, ``normalized`` on v2/v3/v5, ``late_chunking`` on v3/v4) is a
422 on another. ``JINA_MODELS`` lists the known models with their default dimension, the
``dimensions`` range, the maximum input tokens and the tasks; unknown names fall back to the
family their name starts with, or to a minimal payload when no family matches.

``HF_MODELS`` lists the seed Hugging Face models with their dimension, input limit and prompt
convention (multilingual-e5's ``query: `` / ``passage: `` prefixes, the e5-instruct and Qwen3
query instructions): the one table every prefix the clients send comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = [
    "HF_MODELS",
    "JINA_MAX_INPUTS",
    "JINA_MODELS",
    "QWEN3_QUERY_TASK",
    "RETRIEVAL_QUERY_TASK",
    "HuggingFaceModelInfo",
    "JinaModelInfo",
    "e5_instruct_query_prefix",
    "hf_model_info",
    "jina_model_info",
    "qwen3_query_prefix",
]


JINA_MAX_INPUTS = 2048
"""Inputs per embeddings request the Jina API accepts (more is a 400); a model's own
``max_batch_size`` (v4: 512) is lower."""
LATE_CHUNKING_DEFAULT_CONTEXT = 8192
"""Tokens one late-chunking request may hold for a model whose context is not listed."""


@dataclass(frozen=True)
class JinaModelInfo:
    """What one Jina embedding model (or model family) accepts.

    ``dimension`` is the default output size (``None`` when unknown: learned from the first
    response). ``max_dimensions`` is the upper bound of the ``dimensions`` field, ``None`` when
    the model does not accept the field. ``query_task`` / ``passage_task`` are the tasks sent
    by ``embed_query`` / ``embed_documents`` (``None``: no ``task`` field).
    ``max_input_tokens`` is also the context a late-chunking request must fit in;
    ``max_batch_size`` is the model's own inputs-per-request limit when lower than 2,048.
    """

    name: str
    family: str
    dimension: int | None
    max_input_tokens: int | None
    tasks: tuple[str, ...] = ()
    query_task: str | None = None
    passage_task: str | None = None
    max_dimensions: int | None = None
    accepts_normalized: bool = True
    accepts_late_chunking: bool = False
    max_batch_size: int | None = None

    @property
    def accepts_task(self) -> bool:
        return bool(self.tasks)


_RETRIEVAL = ("retrieval.query", "retrieval.passage")
_CODE_TASKS = tuple(
    f"{kind}.{side}"
    for kind in ("nl2code", "qa", "code2code", "code2nl", "code2completion")
    for side in ("query", "passage")
)

# One template per family; known model names are the template with name and dimension set.
_FAMILIES: dict[str, JinaModelInfo] = {
    "v2": JinaModelInfo(name="", family="v2", dimension=768, max_input_tokens=8192),
    "v3": JinaModelInfo(
        name="",
        family="v3",
        dimension=1024,
        max_input_tokens=8192,
        tasks=(*_RETRIEVAL, "text-matching", "classification", "separation"),
        query_task="retrieval.query",
        passage_task="retrieval.passage",
        max_dimensions=1024,
        accepts_late_chunking=True,
    ),
    "v4": JinaModelInfo(
        name="",
        family="v4",
        dimension=2048,
        max_input_tokens=32768,
        tasks=(*_RETRIEVAL, "text-matching", "code.query", "code.passage"),
        query_task="retrieval.query",
        passage_task="retrieval.passage",
        max_dimensions=2048,
        accepts_normalized=False,
        accepts_late_chunking=True,
        max_batch_size=512,
    ),
    "v5": JinaModelInfo(
        name="",
        family="v5",
        dimension=1024,
        max_input_tokens=32768,
        tasks=(*_RETRIEVAL, "text-matching", "clustering", "classification"),
        query_task="retrieval.query",
        passage_task="retrieval.passage",
        max_dimensions=1024,
    ),
    "clip-v1": JinaModelInfo(name="", family="clip-v1", dimension=768, max_input_tokens=8192),
    "clip-v2": JinaModelInfo(
        name="",
        family="clip-v2",
        dimension=1024,
        max_input_tokens=8192,
        tasks=("retrieval.query",),
        query_task="retrieval.query",
        passage_task=None,
        max_dimensions=1024,
    ),
    "code": JinaModelInfo(
        name="",
        family="code",
        dimension=None,
        max_input_tokens=32768,
        tasks=_CODE_TASKS,
        query_task="nl2code.query",
        passage_task="nl2code.passage",
        max_dimensions=None,
        accepts_normalized=False,
    ),
    # Unknown model: send only what the caller set explicitly.
    "generic": JinaModelInfo(
        name="", family="generic", dimension=None, max_input_tokens=None, accepts_normalized=False
    ),
}

_FAMILY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("jina-embeddings-v2", "v2"),
    ("jina-embeddings-v3", "v3"),
    ("jina-embeddings-v4", "v4"),
    ("jina-embeddings-v5", "v5"),
    ("jina-clip-v1", "clip-v1"),
    ("jina-clip-v2", "clip-v2"),
    ("jina-code-embeddings", "code"),
)


def _known(name: str, family: str, **changes: object) -> JinaModelInfo:
    return replace(_FAMILIES[family], name=name, **changes)  # type: ignore[arg-type]


JINA_MODELS: dict[str, JinaModelInfo] = {
    info.name: info
    for info in (
        _known("jina-embeddings-v2-base-en", "v2"),
        _known("jina-embeddings-v2-base-zh", "v2"),
        _known("jina-embeddings-v2-base-de", "v2"),
        _known("jina-embeddings-v2-base-es", "v2"),
        _known("jina-embeddings-v2-base-code", "v2"),
        _known("jina-embeddings-v3", "v3"),
        _known("jina-embeddings-v4", "v4"),
        _known("jina-embeddings-v5-text-small", "v5"),
        _known("jina-embeddings-v5-text-nano", "v5", dimension=768, max_input_tokens=8192),
        _known("jina-clip-v1", "clip-v1"),
        _known("jina-clip-v2", "clip-v2"),
        _known("jina-code-embeddings-0.5b", "code", dimension=896, max_dimensions=896),
        _known("jina-code-embeddings-1.5b", "code", dimension=1536, max_dimensions=1536),
    )
}


def jina_model_info(model: str) -> JinaModelInfo:
    """The metadata of ``model``: exact entry, else its family by name prefix, else generic.

    For an unknown name the dimension is ``None`` (learned from the first response).
    """
    if model in JINA_MODELS:
        return JINA_MODELS[model]
    for prefix, family in _FAMILY_PREFIXES:
        if model.startswith(prefix):
            return replace(_FAMILIES[family], name=model, dimension=None)
    return replace(_FAMILIES["generic"], name=model)


@dataclass(frozen=True)
class HuggingFaceModelInfo:
    """Dimension, input limit and prompt convention of a Hugging Face embedding model.

    ``convention`` names the family's rule (``"e5"``, ``"e5-instruct"``, ``"qwen3"`` or
    ``"none"``); ``query_prefix`` / ``passage_prefix`` are the exact texts it puts in
    front of queries and documents. This table is the only place prefixes come from.
    """

    name: str
    dimension: int | None
    max_input_tokens: int | None
    query_prefix: str = ""
    passage_prefix: str = ""
    convention: str = "none"


RETRIEVAL_QUERY_TASK = "Given a web search query, retrieve relevant passages that answer the query"
"""The retrieval task both Qwen3-Embedding's README and multilingual-e5-large-instruct's
model card use for search queries."""
QWEN3_QUERY_TASK = RETRIEVAL_QUERY_TASK


def qwen3_query_prefix(task: str = QWEN3_QUERY_TASK) -> str:
    """The instruction Qwen3-Embedding expects in front of a query (documents get none):
    ``Instruct: {task}\\nQuery:``, no space after the colon (Qwen3's README)."""
    return f"Instruct: {task}\nQuery:"


def e5_instruct_query_prefix(task: str = RETRIEVAL_QUERY_TASK) -> str:
    """The instruction the e5-instruct family expects in front of a query (documents get
    none): ``Instruct: {task}\\nQuery: ``, with a space (the model card's
    ``get_detailed_instruct``)."""
    return f"Instruct: {task}\nQuery: "


_E5 = {"query_prefix": "query: ", "passage_prefix": "passage: ", "convention": "e5"}
_E5_INSTRUCT = {"query_prefix": e5_instruct_query_prefix(), "convention": "e5-instruct"}
_QWEN3 = {"query_prefix": qwen3_query_prefix(), "convention": "qwen3"}

HF_MODELS: dict[str, HuggingFaceModelInfo] = {
    info.name: info
    for info in (
        HuggingFaceModelInfo("intfloat/multilingual-e5-large", 1024, 512, **_E5),
        HuggingFaceModelInfo("intfloat/multilingual-e5-base", 768, 512, **_E5),
        HuggingFaceModelInfo("intfloat/multilingual-e5-small", 384, 512, **_E5),
        HuggingFaceModelInfo("intfloat/multilingual-e5-large-instruct", 1024, 512, **_E5_INSTRUCT),
        HuggingFaceModelInfo("BAAI/bge-m3", 1024, 8192),
        HuggingFaceModelInfo("sentence-transformers/all-MiniLM-L6-v2", 384, 256),
        HuggingFaceModelInfo("sentence-transformers/all-mpnet-base-v2", 768, 384),
        HuggingFaceModelInfo("Qwen/Qwen3-Embedding-0.6B", 1024, 32768, **_QWEN3),
        HuggingFaceModelInfo("Qwen/Qwen3-Embedding-4B", 2560, 32768, **_QWEN3),
        HuggingFaceModelInfo("Qwen/Qwen3-Embedding-8B", 4096, 32768, **_QWEN3),
    )
}


def hf_model_info(model: str) -> HuggingFaceModelInfo:
    """The metadata of ``model``; unknown models get no prompt convention and no dimension.

    ``intfloat/*e5*-instruct`` models get the e5-instruct query instruction, other
    ``intfloat/*e5*`` models the e5 prefixes, and ``Qwen/Qwen3-Embedding*`` the Qwen3 query
    instruction, even when the name is not listed.
    """
    if model in HF_MODELS:
        return HF_MODELS[model]
    lower = model.lower()
    if lower.startswith("intfloat/") and "e5" in lower:
        convention = _E5_INSTRUCT if "instruct" in lower else _E5
        return HuggingFaceModelInfo(model, None, 512, **convention)
    if lower.startswith("qwen/qwen3-embedding"):
        return HuggingFaceModelInfo(model, None, 32768, **_QWEN3)
    return HuggingFaceModelInfo(model, None, None)
