"""The README cannot rot: its commands match CI and its Python snippets run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_readme_starts_with_the_demo_and_test_commands():
    commands = [b.strip() for b in _blocks("bash")[:2]]
    assert commands[0].endswith("examples/quickstart.py")
    assert commands[1].endswith("-m pytest")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci, ".ci/run must run exactly the README's test command"


@pytest.mark.parametrize("snippet", _blocks("python"), ids=lambda s: s.splitlines()[0][:40])
def test_readme_python_snippets_run(snippet, monkeypatch):
    monkeypatch.delenv("TIDB_DATABASE_URL", raising=False)
    exec(compile(snippet, "README.md", "exec"), {})
