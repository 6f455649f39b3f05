"""Every example runs as written (offline, embedded engine) and prints what it claims.

The examples run as subprocesses with no API key, no ``TIDB_DATABASE_URL`` and a temporary
working directory. They start together (one module fixture) so the suite takes as long as
the slowest example, not the sum.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tidb_jina.testing import FakeEmbeddingServer

pytestmark = pytest.mark.slow  # runs every example as a subprocess
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
OFFLINE_UNSET = (
    "TIDB_DATABASE_URL",
    "JINA_API_KEY",
    "JINAAI_API_KEY",
    "JINA_API_BASE_URL",
    "HF_TOKEN",
    "HUGGINGFACEHUB_API_TOKEN",
    "HF_INFERENCE_ENDPOINT",
)
OFFLINE_FIRST_LINE = "Embeddings: offline LexicalEmbedder"


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def first_line(self) -> str:
        return self.stdout.splitlines()[0] if self.stdout else ""

    def after(self, marker: str) -> str:
        """The output after ``marker`` (which must be there)."""
        assert marker in self.stdout, self.stdout
        return self.stdout.split(marker, 1)[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every example's output, run offline and concurrently."""
    workdir = tmp_path_factory.mktemp("examples")
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_UNSET}
    env["QUICKSTART_DB"] = str(workdir / "quickstart.db")
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(EXAMPLES / name)],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in SCRIPTS
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        results[name] = Run(proc.returncode, out, err)
    return results


def test_every_example_is_covered():
    assert set(SCRIPTS) == {
        "auto_embedding.py",
        "hybrid_search.py",
        "jina_tidb_demo.py",
        "langchain_agent_tool.py",
        "langchain_rag_chain.py",
        "llamaindex_agent_tool.py",
        "llamaindex_query_engine.py",
        "quickstart.py",
        "rerank.py",
    }


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_cleanly_offline(runs, script):
    run = runs[script]
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert "offline" in run.first_line.lower(), run.first_line


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_docstring_says_what_and_which_env_vars(script):
    doc = ast.get_docstring(ast.parse((EXAMPLES / script).read_text(encoding="utf-8")))
    assert doc and len(doc.splitlines()) >= 3, script
    assert "TIDB_DATABASE_URL" in doc and "JINA_API_KEY" in doc, script


def test_quickstart_says_offline_first_then_searches_four_ways(runs):
    run = runs["quickstart.py"]
    assert run.first_line.startswith(OFFLINE_FIRST_LINE)
    assert "JINA_API_KEY" in run.first_line  # how to get real embeddings
    assert "Stored 14 documents" in run.stdout
    semantic = run.after("1. Semantic search (k=3):").splitlines()[1]
    assert "tidb-vector-type" in semantic
    filtered = run.after("year >= 2025:").split("\n\n")[0]
    assert "tidb-" in filtered and "tidb-overview" not in filtered  # 2024: filtered out
    assert "3. Diverse results" in run.stdout
    assert "4. Hybrid search" in run.stdout
    prompt = run.after("5. RAG: the prompt that would go to an LLM")
    assert "Context:" in prompt and "TiFlash" in prompt
    assert "Question: What does a TiDB vector index need?" in prompt


def test_quickstart_keeps_its_database_where_asked(runs):
    run = runs["quickstart.py"]
    assert "quickstart.db" in run.stdout.splitlines()[1]


def test_tutorial_demo_matches_the_tutorial_format_and_ranks_tidb_first(runs):
    run = runs["jina_tidb_demo.py"]
    assert "offline LexicalEmbedder" in run.first_line
    lines = run.stdout.splitlines()[1:]
    assert lines[0] == "- List all documents and their distances to the query:"
    assert lines[1].startswith("  - distance: ") and lines[2].startswith("    content: Jina AI")
    assert lines[3].startswith("  - distance: ") and lines[4].startswith("    content: TiDB is")
    assert lines[5] == "- The most relevant document and its distance to the query:"
    assert lines[6] == lines[3]  # the TiDB text is the most relevant...
    assert lines[7].startswith("    content: TiDB is an open-source MySQL-compatible database")
    assert float(lines[3].split(": ")[1]) < float(lines[1].split(": ")[1])  # ...and nearer


def test_langchain_rag_chain_retrieves_and_answers(runs):
    run = runs["langchain_rag_chain.py"]
    assert "human| What does a TiDB vector index need?" in run.stdout
    sources = run.after("Sources:").split("Answer:")[0]
    assert "tidb-hnsw-index" in sources.splitlines()[1]
    assert "Answer: A TiDB vector index is an HNSW index" in run.stdout


def test_llamaindex_query_engine_retrieves_context_and_filters(runs):
    run = runs["llamaindex_query_engine.py"]
    sources = run.after("Sources:").splitlines()
    assert "tidb-hnsw-index" in sources[1]
    assert "needs a TiFlash replica" in run.after("Response (MockLLM")
    filtered = run.after('Filtered query (topic = "travel")').splitlines()[1:3]
    assert "travel-kyoto" in filtered[0] and all("travel-" in line for line in filtered)


def test_langchain_agent_tool_is_called_and_returns_documents(runs):
    run = runs["langchain_agent_tool.py"]
    assert "Tool: search_tidb_knowledge_base" in run.stdout
    assert '"required": ["query"]' in run.stdout
    assert 'Tool call: search_tidb_knowledge_base({"query": ' in run.stdout
    assert "needs a TiFlash replica" in run.after("Tool output:")
    assert "Final answer: Yes." in run.stdout


def test_llamaindex_agent_tool_returns_the_retrieved_context(runs):
    run = runs["llamaindex_agent_tool.py"]
    assert "Tool: tidb_knowledge_base" in run.stdout
    assert '"required": ["input"]' in run.stdout
    assert "needs a TiFlash replica" in run.after("Tool output")
    assert "Sources: tidb-hnsw-index" in run.stdout


def test_hybrid_search_shows_each_ranking(runs):
    run = runs["hybrid_search.py"]
    for title in (
        "Vector search only:",
        "Full-text search only (BM25):",
        "Hybrid, reciprocal rank fusion:",
        "Hybrid, weighted (alpha=0.7 vector, 0.3 BM25):",
        "LlamaIndex VectorStoreQueryMode.HYBRID (alpha=0.5):",
    ):
        assert "hybrid-search" in run.after(title).splitlines()[1], title
    assert "bm25=" in run.after("Hybrid, reciprocal rank fusion:")


def test_rerank_uses_the_fake_server_offline_and_agrees_across_frameworks(runs):
    run = runs["rerank.py"]
    assert "Reranker: offline, FakeEmbeddingServer at http://127.0.0.1:" in run.stdout
    tops = [
        run.after(title).splitlines()[1].split()[1]
        for title in (
            "Core JinaClient.rerank (top 3):",
            "LangChain JinaRerank.compress_documents (top 3):",
            "LlamaIndex JinaRerank.postprocess_nodes (top 3):",
        )
    ]
    assert tops == ["jina-reranker"] * 3


def test_auto_embedding_says_who_embeds_and_finds_kyoto(runs):
    run = runs["auto_embedding.py"]
    assert run.first_line.startswith("Auto-embedding: offline, the embedded engine")
    assert "EMBED_TEXT('jina_ai/jina-embeddings-v3', document" in run.stdout
    assert "VECTOR(1024)" in run.stdout
    assert "travel-kyoto" in run.after('search_text("Where can I see temples').splitlines()[1]
    filtered = run.after('filter={"year": 2025}):').splitlines()[1:]
    assert "tidb-hnsw-index" in filtered[0]


# --- with a Jina key: the same examples against a loopback stand-in for api.jina.ai ---------

ONLINE_SCRIPTS = (
    "quickstart.py",
    "jina_tidb_demo.py",
    "langchain_rag_chain.py",
    "llamaindex_query_engine.py",
    "hybrid_search.py",
    "rerank.py",
    "auto_embedding.py",
)


@pytest.fixture(scope="module")
def jina_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """The examples with a Jina key set, served by ``FakeEmbeddingServer`` via the base URL.

    The tutorial demo gets only ``JINAAI_API_KEY`` (the tutorial's name for the key).
    """
    workdir = tmp_path_factory.mktemp("examples-jina")
    with FakeEmbeddingServer(api_key="jina_fake_key") as server:
        base = {k: v for k, v in os.environ.items() if k not in OFFLINE_UNSET}
        base["JINA_API_BASE_URL"] = server.url
        procs = {}
        for name in ONLINE_SCRIPTS:
            env = dict(base)
            env["JINAAI_API_KEY" if name == "jina_tidb_demo.py" else "JINA_API_KEY"] = (
                "jina_fake_key"
            )
            procs[name] = subprocess.Popen(
                [sys.executable, str(EXAMPLES / name)],
                cwd=workdir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        results = {}
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=180)
            results[name] = Run(proc.returncode, out, err)
        results["requests"] = Run(0, " ".join(r.path for r in server.requests), "")
        yield results


@pytest.mark.parametrize("script", ONLINE_SCRIPTS)
def test_example_uses_jina_when_a_key_is_set(jina_runs, script):
    run = jina_runs[script]
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "offline" not in run.first_line.lower(), run.first_line
    assert "Jina" in run.first_line


def test_examples_with_a_key_really_called_the_jina_api(jina_runs):
    paths = jina_runs["requests"].stdout.split()
    assert "/v1/embeddings" in paths and "/v1/rerank" in paths


def test_tutorial_demo_with_jina_embeddings_ranks_tidb_first(jina_runs):
    run = jina_runs["jina_tidb_demo.py"]
    assert run.first_line == "Embeddings: Jina AI jina-embeddings-v2-base-en."
    best = run.after("- The most relevant document and its distance to the query:")
    assert "content: TiDB is an open-source" in best


def test_quickstart_with_jina_stores_1024_d_vectors(jina_runs):
    run = jina_runs["quickstart.py"]
    assert run.first_line == "Embeddings: Jina AI jina-embeddings-v3 (JINA_API_KEY)."
    assert "(1024-d vectors" in run.stdout
