"""The adapters reach the core through its public names; the private ones left are listed
here with the reason no public equivalent exists yet, so a new one is a conscious choice."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = ["langchain_tidb_jina", "llama_index_tidb_jina"]

# (adapter module, private core module) -> names imported, and why.
ALLOWED_PRIVATE_IMPORTS: dict[tuple[str, str], set[str]] = {
    # Raw SQL must take the table's engine lock and write marker; no public connection API.
    ("langchain_tidb_jina/_sql_client.py", "tidb_jina.store._engine"): {
        "WRITE_OPTION",
        "engine_lock",
    },
    # The masked URL for the pydantic field; the core has no public masking helper.
    ("llama_index_tidb_jina/_vector_store.py", "tidb_jina.store._engine"): {"safe_url"},
    # The filter tree's node types (``Filter`` and ``parse_filter`` are public).
    ("llama_index_tidb_jina/_filters.py", "tidb_jina.store._filter_tree"): {
        "MAX_FILTER_DEPTH",
        "And",
        "Node",
        "Not",
        "Or",
        "sets_no_condition",
    },
    # Option checking shared with the core clients (one message for unknown options).
    ("langchain_tidb_jina/_embeddings.py", "tidb_jina.embeddings._config"): {
        "unknown_options_error"
    },
    ("llama_index_tidb_jina/_embeddings.py", "tidb_jina.embeddings._config"): {
        "named_parameters",
        "unknown_options_error",
    },
    ("llama_index_tidb_jina/_rerank.py", "tidb_jina.embeddings._config"): {
        "named_parameters",
        "unknown_options_error",
    },
    # Late chunking grouped by source for LangChain's add_documents.
    ("langchain_tidb_jina/_embeddings.py", "tidb_jina.embeddings._late"): {"GroupedEmbed"},
}

# Private methods of core objects that have a public twin: never called from an adapter.
REPLACED_PRIVATE_CALLS = {
    "_embed_sync": "embed_queries / embed_documents",
    "_embed_async": "aembed_queries / aembed_documents",
    "_embed_one_sync": "embed_query",
    "_embed_one_async": "aembed_query",
}


def _modules() -> list[Path]:
    return sorted(p for name in ADAPTERS for p in (ROOT / name).rglob("*.py"))


def _private_core_imports(path: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or node.module is None:
            continue
        parts = node.module.split(".")
        if parts[0] == "tidb_jina" and any(p.startswith("_") for p in parts[1:]):
            found.setdefault(node.module, set()).update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_private_core_imports_are_the_listed_ones(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    for module, names in _private_core_imports(path).items():
        allowed = ALLOWED_PRIVATE_IMPORTS.get((rel, module), set())
        extra = names - allowed
        assert not extra, (
            f"{rel} imports {sorted(extra)} from the private {module}: import the public "
            "name (tidb_jina, tidb_jina.store, tidb_jina.embeddings) or list it here with why"
        )


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_core_call_with_a_public_twin(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in REPLACED_PRIVATE_CALLS:
            pytest.fail(
                f"{path.relative_to(ROOT)}:{node.lineno} calls {node.attr}; use the public "
                f"{REPLACED_PRIVATE_CALLS[node.attr]}"
            )


def test_the_list_has_no_stale_entries() -> None:
    imported = {
        (str(p.relative_to(ROOT)), module): names
        for p in _modules()
        for module, names in _private_core_imports(p).items()
    }
    for key, names in ALLOWED_PRIVATE_IMPORTS.items():
        assert names <= imported.get(key, set()), f"{key}: {names} no longer imported"
