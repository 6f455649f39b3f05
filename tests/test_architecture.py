"""The store's shape holds: no import cycle, small modules, one filter parse per call.

These guard the structure described in docs/decisions.md ("Architecture"): a facade over
one Backend protocol per engine. A new module that reaches back into the facade, or a
call that parses its filter twice, fails here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tidb_jina.store import VectorTable, _filter_tree
from tidb_jina.testing import MySQLRecorder

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "tidb_jina" / "store"


def _imports(path: Path) -> set[str]:
    """Every tidb_jina.store module ``path`` imports, anywhere (TYPE_CHECKING included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "tidb_jina.store":
                found.update(f"tidb_jina.store.{a.name}" for a in node.names)
            elif node.module.startswith("tidb_jina.store."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tidb_jina.store."))
    return {name for name in found if (STORE / f"{name.rsplit('.', 1)[1]}.py").exists()}


def test_no_import_cycle_inside_the_store() -> None:
    graph = {
        f"tidb_jina.store.{p.stem}": _imports(p) for p in STORE.glob("*.py") if p.stem != "__init__"
    }
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph.get(name, ())):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep] if dep in path else [name, dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_modules_stay_small() -> None:
    packages = ("tidb_jina", "langchain_tidb_jina", "llama_index_tidb_jina")
    sizes = {
        p: len(p.read_text().splitlines()) for pkg in packages for p in (ROOT / pkg).rglob("*.py")
    }
    assert sizes[STORE / "_table.py"] < 500
    too_big = {str(p.relative_to(ROOT)): n for p, n in sizes.items() if n > 700}
    assert not too_big, too_big


def test_the_facade_does_not_branch_on_the_engine() -> None:
    """backend_for() (outside the classes) is the one place that chooses an engine."""
    for name in ("_table.py", "_table_base.py"):
        tree = ast.parse((STORE / name).read_text())
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
        for node in (n for c in classes for n in ast.walk(c)):
            if isinstance(node, (ast.If, ast.IfExp)):
                test = ast.unparse(node.test)
                assert "is_tidb" not in test and "dialect" not in test, test


# --- one parse per call ----------------------------------------------------------------


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records each parse of a filter dict (outermost call of the parser only)."""
    calls: list[Any] = []
    real = _filter_tree._parse_filter
    depth = 0

    def spy(filter: Any, where: str) -> Any:
        nonlocal depth
        if depth == 0:
            calls.append(filter)
        depth += 1
        try:
            return real(filter, where)
        finally:
            depth -= 1

    monkeypatch.setattr(_filter_tree, "_parse_filter", spy)
    return calls


FILTER = {"$or": [{"tag": "a"}, {"n": {"$gte": 2}}], "kind": {"$ne": "x"}}
SQL_ONLY = {"tag": {"$like": "a%"}, "n": {"$in": [1, 2, 3]}}  # $like runs in SQL


def _embedded() -> VectorTable:
    table = VectorTable("sqlite://", table_name="parses")
    table.upsert(
        [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.2]],
        ids=["a", "b", "c", "d"],
        documents=["alpha text", "beta text", "gamma", "delta text"],
        metadatas=[{"tag": "a", "n": 1}, {"tag": "b", "n": 2}, {"tag": "a", "n": 3}, {}],
    )
    return table


CALLS = {
    "search": lambda t, f: t.search([1.0, 0.0], k=2, filter=f),
    "search_prefilter": lambda t, f: t.search([1.0, 0.0], k=2, filter=f, prefilter=True),
    "get": lambda t, f: t.get(filter=f),
    "count": lambda t, f: t.count(f),
    "full_text_search": lambda t, f: t.full_text_search("text", filter=f),
    "hybrid_search": lambda t, f: t.hybrid_search([1.0, 0.0], "text", filter=f),
    "mmr": lambda t, f: t.max_marginal_relevance_search([1.0, 0.0], k=2, filter=f),
    "delete": lambda t, f: t.delete(filter=f),
}


@pytest.mark.parametrize("flt", [FILTER, SQL_ONLY], ids=["numpy", "sql"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_each_embedded_call_parses_its_filter_once(parses: list[Any], call: str, flt: Any) -> None:
    table = _embedded()
    parses.clear()
    CALLS[call](table, flt)
    assert parses == [flt], f"{call} parsed its filter {len(parses)} times"


def test_a_tidb_search_parses_once_across_post_and_pre_filter(parses: list[Any]) -> None:
    """Post-filter finds too few rows, so the exact pre-filter query follows: one parse."""
    recorder = MySQLRecorder(search_hits=0)
    table = VectorTable(recorder.url, table_name="docs", engine_args=recorder.engine_args())
    recorder.add_table("docs", 2)
    parses.clear()
    assert table.search([1.0, 0.0], k=3, filter=FILTER) == []
    searches = [s for s in recorder.sql("SELECT") if "VEC_COSINE_DISTANCE" in s]
    assert len(searches) == 2, "post-filter, then the exact pre-filter fallback"
    assert parses == [FILTER]
    for call in ("get", "count", "delete"):
        parses.clear()
        CALLS[call](table, FILTER)
        assert parses == [FILTER], call


def test_a_langchain_search_parses_once(parses: list[Any]) -> None:
    pytest.importorskip("langchain_core")
    from langchain_tidb_jina import ProviderEmbeddings, TiDBVectorStore
    from tidb_jina.testing import LexicalEmbedder

    store = TiDBVectorStore(
        embedding=ProviderEmbeddings(provider=LexicalEmbedder(dimension=16)),
        connection_string="sqlite://",
        table_name="lc_parses",
    )
    store.add_texts(["alpha", "beta"], metadatas=[{"tag": "a"}, {"tag": "b"}])
    parses.clear()
    store.similarity_search("alpha", k=1, filter=FILTER)
    assert parses == [FILTER]


# --- typed async twins -----------------------------------------------------------------


def _mypy(source: str, tmp_path: Path) -> str:
    path = tmp_path / "uses_aio.py"
    path.write_text(textwrap.dedent(source))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return result.stdout


@pytest.mark.slow
def test_mypy_sees_the_async_twins_signatures(tmp_path: Path) -> None:
    out = _mypy(
        """
        from tidb_jina import VectorTable

        async def main(table: VectorTable) -> None:
            hits = await table.aio.search([1.0, 0.0], k=3, filter={"a": 1})
            reveal_type(hits)
            reveal_type(table.aio.search)
            await table.aio.search([1.0], kk=3)
        """,
        tmp_path,
    )
    assert 'Revealed type is "list[tidb_jina.store._results.SearchResult]"' in out, out
    assert "(vector: Any, *, k: int =" in out and "prefilter: bool | None =" in out, out
    assert 'Unexpected keyword argument "kk"' in out, out
