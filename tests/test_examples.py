"""Every example runs as written (offline, embedded engine) and prints what it claims."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, tmp_path: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TIDB_DATABASE_URL"}
    env["QUICKSTART_DB"] = str(tmp_path / "q.db")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quickstart_ranks_tidb_documents_first(tmp_path):
    out = _run("quickstart.py", tmp_path)
    nearest = out.split("Nearest to a TiDB question:")[1].splitlines()[1:3]
    assert all("tidb-" in line for line in nearest), out
    filtered = out.split("only documents from 2025 onwards:")[1].split("\n\n")[0]
    assert "tidb-2" in filtered and "tidb-1" not in filtered
    assert "Deleted 1 food document(s); 4 left." in out
