"""The public namespaces: what __all__ lists exists, is sorted, and nothing drifts."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "tidb_jina",
    "tidb_jina.store",
    "tidb_jina.embeddings",
    "tidb_jina.testing",
    "langchain_tidb_jina",
    "llama_index_tidb_jina",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_resolves(name):
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported, key=_isort_key), "sort __all__ (ruff RUF022)"
    for member in exported:
        assert hasattr(module, member), f"{name}.{member} is in __all__ but missing"
    public = {m for m in vars(module) if not m.startswith("_") and not _is_submodule(module, m)}
    assert public <= set(exported), f"public names missing from __all__: {public - set(exported)}"


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions."""
    if name.isupper() or (name.upper() == name and "_" in name):
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


def _is_submodule(module, member) -> bool:
    value = getattr(module, member)
    return type(value).__name__ == "module"


@pytest.mark.slow
def test_core_imports_no_framework():
    import subprocess
    import sys

    code = (
        "import sys, tidb_jina, tidb_jina.store, tidb_jina.embeddings, tidb_jina.testing;"
        "bad = [m for m in sys.modules if m.startswith(('langchain', 'llama_index'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
