"""The benchmark scripts stay runnable: each runs on tiny sizes (not a timing test).

A script whose peer packages are not installed (``pip install -e ".[bench]"``) is skipped.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs every benchmark script as a subprocess
BENCH = Path(__file__).resolve().parent.parent / "bench"

CASES = [
    ("wire_format.py", ["--n", "20", "--dim", "64"], ["tidb_vector"]),
    (
        "search_embedded.py",
        ["--n", "500", "--dim", "32", "--queries", "2"],
        ["langchain_core", "llama_index.core"],
    ),
    ("ingest_embedded.py", ["--n", "500", "--dim", "32", "--repeat", "1"], []),
    ("langchain_add_texts.py", ["--n", "200", "--dim", "16", "--repeat", "1"], ["langchain_core"]),
    (
        "langchain_batch_search.py",
        ["--n", "500", "--dim", "16", "--queries", "3", "--repeat", "1"],
        ["langchain_core"],
    ),
    ("scaling.py", ["--sizes", "500x32,1000x16", "--queries", "2"], []),
    ("fulltext_embedded.py", ["--n", "300", "--queries", "2"], []),
    ("filter_in_lists.py", ["--n", "2000", "--values", "300", "--repeat", "1"], []),
    ("mixed_load.py", ["--n", "500", "--dim", "16", "--seconds", "0.3"], []),
    ("cold_open.py", ["--n", "500", "--dim", "16", "--rounds", "1"], []),
    (
        "cold_open.py",
        ["--n", "500", "--dim", "16", "--rounds", "1", "--snapshot-file", "--warm"],
        [],
    ),
    ("concurrency.py", ["--n", "500", "--dim", "16", "--seconds", "0.2"], []),
    ("filtered_search.py", ["--n", "500", "--dim", "16", "--queries", "2"], []),
    ("delete_then_search.py", ["--n", "500", "--dim", "16", "--rows", "5", "--rounds", "2"], []),
    (
        "tidb_round_trips.py",
        ["--n", "50", "--dim", "8"],
        ["langchain_community", "tidb_vector", "pymysql"],
    ),
    (
        "embedding_throughput.py",
        ["--n", "40", "--latency", "0.005"],
        ["langchain_community", "llama_index.embeddings.jinaai"],
    ),
]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize(("script", "args", "needs"), CASES, ids=[c[0] for c in CASES])
def test_bench_script_runs_on_tiny_sizes(script: str, args: list[str], needs: list[str]) -> None:
    missing = [m for m in needs if not _installed(m)]
    if missing:
        pytest.skip(f"bench peers not installed: {', '.join(missing)}")
    done = subprocess.run(
        [sys.executable, "-W", "ignore", script, *args],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| " in done.stdout  # printed its markdown table
