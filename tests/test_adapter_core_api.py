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
    return _private_core_uses(path.read_text())


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_core_uses(source: str) -> dict[str, set[str]]:
    """``{core module: names}`` for every private core name ``source`` reaches: names
    imported from a private module (``from tidb_jina.store._engine import x``), private
    names or modules imported from a public one (``from tidb_jina import _errors``),
    private modules imported whole (``import tidb_jina._errors``, recorded as ``"*"``) and
    private attributes of the package (``tidb_jina.store._engine.x``)."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "tidb_jina":
                continue
            names = {a.name for a in node.names}
            if not any(_private(p) for p in parts[1:]):
                names = {n for n in names if _private(n)}
            if names:
                found.setdefault(node.module, set()).update(names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "tidb_jina" and any(_private(p) for p in parts[1:]):
                    found.setdefault(alias.name, set()).add("*")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            dotted = _dotted(node.value)
            if dotted is not None and dotted.split(".")[0] == "tidb_jina":
                found.setdefault(dotted, set()).add(node.attr)
    return found


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of names, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


@pytest.mark.parametrize(
    ("source", "module", "name"),
    [
        (
            "from tidb_jina.store._engine import engine_lock",
            "tidb_jina.store._engine",
            "engine_lock",
        ),
        ("from tidb_jina import _errors", "tidb_jina", "_errors"),
        ("from tidb_jina.store import _engine as e", "tidb_jina.store", "_engine"),
        ("import tidb_jina._errors", "tidb_jina._errors", "*"),
        ("import tidb_jina.store._engine as e", "tidb_jina.store._engine", "*"),
        ("import tidb_jina\nx = tidb_jina._errors.SchemaError", "tidb_jina", "_errors"),
        (
            "def f():\n    from tidb_jina.embeddings._late import plan_windows",
            "tidb_jina.embeddings._late",
            "plan_windows",
        ),
    ],
)
def test_the_check_sees_every_form_of_private_import(source: str, module: str, name: str) -> None:
    assert name in _private_core_uses(source).get(module, set())


def test_the_check_leaves_public_names_alone() -> None:
    source = (
        "import tidb_jina\nfrom tidb_jina import SchemaError\nfrom tidb_jina.store import "
        "VectorTable\nfrom ._x import _y\nv = tidb_jina.__version__\nfrom langchain_core._api "
        "import deprecated"
    )
    assert _private_core_uses(source) == {}


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
