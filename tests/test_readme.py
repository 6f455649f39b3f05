"""The README cannot rot: its commands match CI and its Python snippets run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_readme_starts_with_the_install_lines_then_the_demo_and_test_commands():
    install = _blocks("bash")[0].strip().splitlines()
    assert [line.split("#")[0].strip() for line in install] == [
        'pip install "tidb-jina[langchain]"',
        'pip install "tidb-jina[llama-index]"',
        'pip install "tidb-jina[all]"',
    ]
    commands = [b.strip() for b in _blocks("bash")[1:3]]
    assert commands[0].endswith("examples/quickstart.py")
    assert commands[1].endswith("-m pytest")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci, ".ci/run must run exactly the README's test command"


@pytest.mark.parametrize("snippet", _blocks("python"), ids=lambda s: s.splitlines()[0][:40])
def test_readme_python_snippets_run(snippet, monkeypatch):
    monkeypatch.delenv("TIDB_DATABASE_URL", raising=False)
    exec(compile(snippet, "README.md", "exec"), {})


@pytest.mark.slow
def test_readme_cli_commands_run(tmp_path):
    """Each line of the README's CLI block runs as written (offline, embedded engine)."""
    import json
    import os
    import subprocess
    import sys

    section = README.split("## Command line: `tidb-jina`", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL).group(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JINA", "HF_", "HUGGING"))}
    env["TIDB_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    outputs = []
    for line in block.strip().splitlines():
        command = line.split("  #", 1)[0].strip()
        done = subprocess.run(
            command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        outputs.append(done.stdout)
    assert "Ingested 5 file(s), 7 chunks" in outputs[0]
    assert outputs[1].startswith("1. score") and "tidb-vector-search.md" in outputs[1]
    hits = json.loads(outputs[2])
    assert hits and all(h["metadata"]["source"].endswith(".md") for h in hits)
    assert re.search(r"^rows:\s+7$", outputs[3], flags=re.MULTILINE)
    assert "nothing written" in outputs[5] and "0 new, 0 changed, 4 unchanged" in outputs[5]
    assert "0 row(s) of 0 deleted file(s) would be pruned" in outputs[5]
    assert "docs/rag-guide.md" in outputs[6] and "data/faq.jsonl" in outputs[6]
    assert outputs[7].startswith("Deleted 1 row(s)")
