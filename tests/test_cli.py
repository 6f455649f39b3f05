"""The ``tidb-jina`` command line, end to end on the embedded engine (offline).

Driven in-process through ``main([...])`` and, for the entry point itself, as
``python -m tidb_jina.cli``. Every error is one line on stderr with a non-zero exit status
and no traceback.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tidb_jina import HuggingFaceClient, JinaClient
from tidb_jina._cli import CLIError, _settings, _sources
from tidb_jina._cli._progress import Progress, format_seconds
from tidb_jina.cli import main
from tidb_jina.store import VectorTable
from tidb_jina.testing import FakeEmbeddingServer, LexicalEmbedder

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data"
KEY_ENV = (
    "TIDB_DATABASE_URL",
    "TIDB_JINA_TABLE",
    "TIDB_JINA_PROVIDER",
    "TIDB_JINA_MODEL",
    "JINA_API_KEY",
    "JINAAI_API_KEY",
    "HF_TOKEN",
    "HUGGINGFACEHUB_API_TOKEN",
)
CORPUS_CHUNKS = 21  # 14 + 3 JSONL records, 4 short text files (one chunk each)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline working directory holding a copy of the bundled corpus."""
    for name in KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(DATA, tmp_path / "corpus")
    return tmp_path


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(workdir: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``main(argv)``; returns (exit status, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def rows(table: str = "tidb_jina_vectors") -> int:
    return VectorTable("sqlite:///tidb_jina.db", table_name=table).count()


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and " note: " not in line]
    assert len(lines) == 1, err
    assert "error:" in lines[0]
    for word in words:
        assert word in lines[0], lines[0]


# --- ingest ------------------------------------------------------------------------------


def test_ingest_twice_adds_no_duplicates(cli):
    code, out, err = cli("ingest", "corpus")
    assert code == 0, err
    assert f"{CORPUS_CHUNKS} new" in out
    assert rows() == CORPUS_CHUNKS
    assert "offline lexical embedder" in err  # the note, on stderr
    assert f"{CORPUS_CHUNKS}/{CORPUS_CHUNKS} chunks 100%" in err  # the final progress line
    assert "chunks/s" in err and "ETA" in err

    code, out, err = cli("ingest", "corpus")
    assert code == 0, err
    assert f"0 new, 0 updated, {CORPUS_CHUNKS} unchanged (skipped)" in out
    assert rows() == CORPUS_CHUNKS


def test_ids_are_deterministic_and_metadata_says_where_text_came_from(cli):
    assert cli("ingest", "corpus/docs/rag-guide.md", "corpus/faq.jsonl")[0] == 0
    table = VectorTable("sqlite:///tidb_jina.db", table_name="tidb_jina_vectors")
    # A file given alone is named inside its folder: docs/..., as `ingest corpus/docs` names it.
    guide = table.get([_sources.chunk_id("docs/rag-guide.md", 0)])[0]
    assert guide.metadata == {
        "source": "docs/rag-guide.md",
        "chunk": 0,
        "title": "Retrieval-augmented generation",
    }
    faq = table.get(["faq-2"])[0]  # JSONL ids are kept; nested metadata is flattened
    assert faq.metadata == {
        "topic": "setup",
        "kind": "faq",
        "source": "corpus/faq.jsonl",
        "line": 2,
    }


def test_ingest_resumes_after_a_failure(cli, monkeypatch):
    calls = {"n": 0}
    real = LexicalEmbedder.embed_documents

    def flaky(self, texts):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionResetError("connection reset by peer")
        return real(self, texts)

    monkeypatch.setattr(LexicalEmbedder, "embed_documents", flaky)
    code, _, err = cli("ingest", "corpus", "--batch-size", "4")
    assert_one_line_error(code, err.splitlines()[-1], "connection reset")
    assert code == 1 and rows() == 8  # two whole batches made it

    code, out, err = cli("ingest", "corpus", "--batch-size", "4")
    assert code == 0, err
    assert f"{CORPUS_CHUNKS - 8} new, 0 updated, 8 unchanged (skipped)" in out
    assert rows() == CORPUS_CHUNKS


def test_changed_file_updates_chunks_and_removes_stale_ones(cli, workdir):
    notes = workdir / "notes.md"
    notes.write_text("\n\n".join(f"Paragraph {i} about TiDB vectors." for i in range(20)))
    assert cli("ingest", "notes.md", "--chunk-size", "120", "--chunk-overlap", "20")[0] == 0
    before = rows()
    assert before > 3

    notes.write_text("Paragraph 0 about TiDB vectors, rewritten.\n\nParagraph 1 is short.")
    code, out, err = cli("ingest", "notes.md", "--chunk-size", "120", "--chunk-overlap", "20")
    assert code == 0, err
    assert "1 updated" in out and f"{before - 1} stale removed" in out
    assert rows() == 1


def test_ingest_can_be_quiet_and_use_flags_for_the_table(cli):
    code, _, err = cli(
        "ingest", "corpus/faq.jsonl", "--no-progress", "--provider", "lexical", "--table", "faq"
    )
    assert code == 0
    assert err == ""  # no progress bar, and no note when the provider was chosen explicitly
    assert rows("faq") == 3


# --- search ------------------------------------------------------------------------------


@pytest.fixture
def ingested(cli: Cli) -> Cli:
    assert cli("ingest", "corpus", "--no-progress")[0] == 0
    return cli


def test_search_prints_ranked_hits(ingested):
    code, out, err = ingested("search", "What does a TiDB vector index need?", "-k", "2")
    assert code == 0, err
    assert out.startswith("1. score ")
    assert "id tidb-hnsw-index" in out.splitlines()[0]
    assert "corpus/corpus.jsonl:3" in out.splitlines()[0]
    assert "2. score " in out and "3. score " not in out


def test_search_json_with_filter(ingested):
    code, out, err = ingested("search", "TiDB", "--json", "-k", "5", "--filter", '{"kind": "faq"}')
    assert code == 0, err
    hits = json.loads(out)
    assert hits and {h["metadata"]["kind"] for h in hits} == {"faq"}
    assert set(hits[0]) == {"id", "score", "distance", "text_score", "document", "metadata"}


def test_search_fulltext_and_hybrid_modes(ingested):
    code, out, _ = ingested("search", "tram castle", "--mode", "fulltext", "--json", "-k", "1")
    assert code == 0
    (hit,) = json.loads(out)
    assert hit["id"] == "travel-lisbon" and hit["distance"] is None and hit["text_score"] > 0

    code, out, _ = ingested("search", "tram castle", "--mode", "hybrid", "--json", "-k", "2")
    assert code == 0
    hits = json.loads(out)
    assert hits[0]["id"] == "travel-lisbon" and hits[0]["distance"] is not None


def test_search_with_no_match_says_so(ingested):
    code, out, _ = ingested("search", "zzzz", "--mode", "fulltext")
    assert (code, out.strip()) == (0, "No results.")


# --- info, doctor, drop -------------------------------------------------------------------


def test_info_text_and_json(ingested):
    code, out, _ = ingested("info")
    assert code == 0
    assert "table:     tidb_jina_vectors" in out
    assert f"rows:      {CORPUS_CHUNKS}" in out
    assert "dimension: 256" in out and "metric:    cosine" in out
    assert "index:     exact" in out

    code, out, _ = ingested("info", "--json")
    details = json.loads(out)
    assert details["rows"] == CORPUS_CHUNKS and details["index"] == "exact"


def test_doctor_passes_offline_on_the_embedded_engine(ingested):
    code, out, _ = ingested("doctor")
    assert code == 0
    assert "[ok]   connection" in out and "table tidb_jina_vectors" in out
    assert "All checks passed." in out


def test_doctor_fails_with_exit_1_when_the_database_is_unreachable(cli):
    code, out, err = cli("doctor", "--database-url", "mysql+pymysql://u:secret@127.0.0.1:1/db")
    assert code == 1
    assert "[FAIL] connection" in out and "secret" not in out
    assert "Traceback" not in err


def test_drop_needs_yes(ingested):
    code, _, err = ingested("drop")
    assert_one_line_error(code, err, "--yes", f"{CORPUS_CHUNKS} rows")
    assert rows() == CORPUS_CHUNKS

    code, out, _ = ingested("drop", "--yes")
    assert code == 0 and "Dropped table 'tidb_jina_vectors'" in out
    assert not VectorTable("sqlite:///tidb_jina.db", table_name="tidb_jina_vectors").exists()


# --- errors: one line, non-zero, no traceback ----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["search", "q", "--bogus"], ["unrecognized arguments: --bogus"]),
        (["search"], ["required: query"]),
        (["frobnicate"], ["invalid choice"]),
        (["search", "q", "--mode", "fuzzy"], ["invalid choice"]),
        (["ingest", "corpus", "--chunk-size", "ten"], ["invalid int value"]),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(cli, argv, words):
    code, _, err = cli(*argv)
    assert code == 2
    assert_one_line_error(code, err, *words)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["search", "q", "--filter", "{bad"], ["--filter is not valid JSON"]),
        (["search", "q", "--filter", "[1, 2]"], ["--filter must be a JSON object"]),
        (["search", "q", "--filter", '{"year": {"$near": 1}}'], ["$near"]),
        (["search", "q", "--table", "nope"], ["table 'nope' does not exist"]),
        (["search", "q", "-k", "0"], ["-k must be at least 1"]),
        (["info", "--database-url", "missing.db"], ["missing.db does not exist"]),
        (["ingest", "no/such/dir"], ["no/such/dir: no such file or directory"]),
        (["ingest", "corpus", "--chunk-overlap", "1000"], ["--chunk-overlap"]),
        (["ingest", "corpus", "--table", "bad-name!"], ["bad-name!"]),
    ],
)
def test_errors_are_one_line_and_exit_1(ingested, argv, words):
    code, _, err = ingested(*argv)
    assert code == 1
    assert_one_line_error(code, err, *words)


def test_bad_files_are_reported_with_their_place(cli, workdir):
    (workdir / "image.png").write_bytes(b"\x89PNG")
    code, _, err = cli("ingest", "image.png")
    assert_one_line_error(code, err, "image.png: unsupported file type")

    (workdir / "bad.jsonl").write_text('{"text": "ok"}\n{"title": "no text"}\n')
    code, _, err = cli("ingest", "bad.jsonl", "--strict")
    assert_one_line_error(code, err, "bad.jsonl:2", '"text"', "--strict")
    assert not Path("tidb_jina.db").exists() or rows() == 0  # stopped before writing

    (workdir / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    code, _, err = cli("ingest", "latin1.txt", "--strict")
    assert_one_line_error(code, err, "not UTF-8")


def test_dimension_mismatch_is_one_clear_line(ingested):
    table = VectorTable("sqlite:///tidb_jina.db", table_name="small", dimension=8)
    table.upsert([[1.0] + [0.0] * 7], ids=["x"])
    code, _, err = ingested("search", "q", "--table", "small")
    assert_one_line_error(code, err, "VECTOR(8)")


def test_debug_shows_the_traceback(ingested):
    with pytest.raises(CLIError):
        ingested("search", "q", "--filter", "{bad", "--debug")


def test_help_and_version_exit_0(cli):
    code, out, _ = cli("--help")
    assert code == 0 and "ingest" in out and "doctor" in out
    code, out, _ = cli("--version")
    assert code == 0 and out.startswith("tidb-jina ")
    assert cli()[0] == 2  # no command: the help, on stderr


# --- settings --------------------------------------------------------------------------


def test_provider_follows_the_keys(workdir, monkeypatch, capsys):
    assert isinstance(_settings.embedder(None, None), LexicalEmbedder)
    assert "offline lexical embedder" in capsys.readouterr().err

    monkeypatch.setenv("HF_TOKEN", "hf_test")
    hf = _settings.embedder(None, None)
    assert isinstance(hf, HuggingFaceClient) and hf.model == _settings.DEFAULT_HF_MODEL

    monkeypatch.setenv("JINAAI_API_KEY", "jina_test")  # the tutorial's name counts
    jina = _settings.embedder(None, "jina-embeddings-v2-base-en")
    assert isinstance(jina, JinaClient) and jina.model == "jina-embeddings-v2-base-en"

    monkeypatch.setenv("TIDB_JINA_PROVIDER", "lexical")
    assert isinstance(_settings.embedder(None, None), LexicalEmbedder)
    assert capsys.readouterr().err == ""  # chosen on purpose: no note
    monkeypatch.setenv("TIDB_JINA_PROVIDER", "openai")
    with pytest.raises(CLIError, match="unknown provider 'openai'"):
        _settings.embedder(None, None)


def test_database_url_flag_env_and_default(workdir, monkeypatch):
    assert _settings.database_url(None) == "sqlite:///tidb_jina.db"
    assert _settings.database_url("data/my.db") == "sqlite:///data/my.db"
    monkeypatch.setenv("TIDB_DATABASE_URL", "mysql+pymysql://u:p@h:4000/db")
    assert _settings.database_url(None) == "mysql+pymysql://u:p@h:4000/db"
    assert _settings.database_url("sqlite://") == "sqlite://"


# --- chunking and progress ----------------------------------------------------------------


def test_split_text_bounds_sizes_overlaps_and_keeps_every_word():
    text = " ".join(f"word{i}" for i in range(400))
    chunks = _sources.split_text(text, 100, 30)
    assert all(len(c) <= 100 for c in chunks)
    assert {w for c in chunks for w in c.split()} == set(text.split())
    for left, right in itertools.pairwise(chunks):
        assert left.split()[-1] in right.split()  # consecutive chunks overlap
        assert right.split()[0] in left.split()  # and start at a whole word
    assert _sources.split_text("  short  ", 100, 10) == ["short"]
    assert _sources.split_text("   ", 100, 10) == []


def test_split_text_prefers_paragraph_breaks():
    text = "A" * 60 + "\n\n" + "B" * 60
    assert _sources.split_text(text, 100, 0) == ["A" * 60, "B" * 60]


def test_progress_line_has_rate_and_eta():
    now = [0.0]
    stream = io.StringIO()
    bar = Progress(100, stream=stream, clock=lambda: now[0], log_interval=1.0)
    now[0] = 2.0
    bar.advance(50)
    assert "50/100 chunks  50%   25.0 chunks/s ETA 0:02" in stream.getvalue()
    now[0] = 4.0
    bar.advance(50)
    bar.close()
    assert stream.getvalue().splitlines()[-1].endswith("ETA 0:00")
    assert format_seconds(3725) == "1:02:05" and format_seconds(None) == "--:--"


# --- the entry point as a process ---------------------------------------------------------


def _module(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in KEY_ENV}
    return subprocess.run(
        [sys.executable, "-m", "tidb_jina.cli", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_python_dash_m_entry_point(workdir):
    done = _module("ingest", "corpus/faq.jsonl", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "3 new" in done.stdout and "3/3 chunks" in done.stderr

    done = _module("search", "Which TiDB version supports vector search?", "-k", "1", cwd=workdir)
    assert done.returncode == 0 and "id faq-1" in done.stdout

    done = _module("search", "q", "--filter", "not json", cwd=workdir)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("tidb-jina: error: --filter")

    done = _module("--no-such-flag", cwd=workdir)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


# --- real providers, served by a loopback stand-in -------------------------------------------


@pytest.mark.parametrize(
    ("env", "dimension"),
    [
        ({"JINA_API_KEY": "jina_fake"}, 1024),  # jina-embeddings-v3 via JINA_API_BASE_URL
        ({"HF_TOKEN": "hf_fake"}, 384),  # a TEI server via HF_INFERENCE_ENDPOINT
    ],
    ids=["jina", "hf"],
)
def test_ingest_and_search_with_a_provider_chosen_by_its_key(cli, monkeypatch, env, dimension):
    with FakeEmbeddingServer() as server:
        monkeypatch.setenv("JINA_API_BASE_URL", server.url)
        monkeypatch.setenv("HF_INFERENCE_ENDPOINT", server.url)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code, out, err = cli("ingest", "corpus/faq.jsonl", "--no-progress")
        assert code == 0, err
        assert err == ""  # no lexical note: a real provider was found
        code, out, err = cli("search", "Which TiDB version supports vector search?", "-k", "1")
        assert code == 0, err
        assert "id faq-1" in out
        assert server.api_requests()
    code, out, _ = cli("info", "--json")
    assert json.loads(out)["dimension"] == dimension


# --- ingest keeps the table in step with the files -------------------------------------------


def listed(cli: Cli) -> dict[str, int]:
    code, out, err = cli("sources", "--json")
    assert code == 0, err
    return json.loads(out)


def test_ingest_from_two_working_directories_stores_one_copy(cli, workdir, monkeypatch):
    assert cli("ingest", "corpus", "--no-progress")[0] == 0
    elsewhere = workdir / "corpus" / "docs"
    monkeypatch.chdir(elsewhere)  # the same folder, named from inside it
    code, out, err = cli("ingest", "..", "--no-progress", "--database-url", "../../tidb_jina.db")
    assert code == 0, err
    assert f"0 new, 0 updated, {CORPUS_CHUNKS} unchanged (skipped)" in out
    monkeypatch.chdir(workdir.parent)  # and from the parent of the project
    code, out, err = cli(
        "ingest", f"{workdir.name}/corpus", "--no-progress",
        "--database-url", f"{workdir.name}/tidb_jina.db",
    )  # fmt: skip
    assert code == 0, err
    assert f"{CORPUS_CHUNKS} unchanged" in out
    monkeypatch.chdir(workdir)
    assert rows() == CORPUS_CHUNKS
    assert "corpus/docs/rag-guide.md" in listed(cli)


def test_prune_removes_the_rows_of_deleted_files(cli, workdir):
    assert cli("ingest", "corpus", "--no-progress")[0] == 0
    guide_rows = listed(cli)["corpus/docs/rag-guide.md"]
    (workdir / "corpus" / "docs" / "rag-guide.md").unlink()

    code, out, _ = cli("ingest", "corpus", "--no-progress")  # without --prune: kept
    assert code == 0 and rows() == CORPUS_CHUNKS

    code, out, err = cli("ingest", "corpus", "--prune", "--dry-run")
    assert code == 0
    assert f"{guide_rows} row(s) of 1 deleted file(s) would be pruned" in out
    assert "would prune the rows of files gone: corpus/docs/rag-guide.md" in err
    assert rows() == CORPUS_CHUNKS  # a dry run writes nothing

    code, out, err = cli("ingest", "corpus", "--prune", "--no-progress")
    assert code == 0, err
    assert f"{guide_rows} rows of 1 deleted file(s) pruned" in out
    assert "pruning the rows of files gone: corpus/docs/rag-guide.md" in err
    assert rows() == CORPUS_CHUNKS - guide_rows
    assert "corpus/docs/rag-guide.md" not in listed(cli)


def test_a_changed_model_re_embeds_instead_of_skipping(cli, monkeypatch):
    assert cli("ingest", "corpus", "--no-progress")[0] == 0  # offline lexical embedder
    assert json.loads(cli("info", "--json")[1])["model"] == "lexical"
    with FakeEmbeddingServer() as server:
        monkeypatch.setenv("JINA_API_BASE_URL", server.url)
        monkeypatch.setenv("JINA_API_KEY", "jina_fake")
        code, out, _ = cli("ingest", "corpus", "--dry-run")
        assert "model changed from lexical to jina-embeddings-v3" in out
        assert f"embedding: {CORPUS_CHUNKS} text(s)" in out
        code, out, err = cli("ingest", "corpus", "--no-progress")
        assert code == 0, err
        assert "re-embedding everything with jina-embeddings-v3" in err
        assert f"{CORPUS_CHUNKS} new" in out and "unchanged (skipped)" in out
        assert server.api_requests()
    info = json.loads(cli("info", "--json")[1])
    assert (info["model"], info["dimension"], info["rows"]) == (
        "jina-embeddings-v3",
        1024,
        CORPUS_CHUNKS,
    )
    monkeypatch.delenv("JINA_API_KEY")  # back to the lexical embedder: refused, not mixed
    for mode in ("vector", "hybrid"):
        code, _, err = cli("search", "what is TiDB?", "--mode", mode)
        assert_one_line_error(code, err, "jina-embeddings-v3", "lexical")
    assert cli("search", "TiDB", "--mode", "fulltext")[0] == 0  # words need no model


def test_a_model_change_never_drops_rows_from_other_paths(cli, monkeypatch):
    assert cli("ingest", "corpus", "--no-progress")[0] == 0
    monkeypatch.setenv("TIDB_JINA_PROVIDER", "lexical")
    monkeypatch.setenv("TIDB_JINA_MODEL", "lexical-v2")
    code, _, err = cli("ingest", "corpus/faq.jsonl", "--no-progress")
    assert_one_line_error(code, err, "lexical-v2", "--table NEW")
    assert rows() == CORPUS_CHUNKS


def test_a_bad_file_is_skipped_and_the_rest_ingested(cli, workdir):
    (workdir / "corpus" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (workdir / "corpus" / "empty.md").write_text("  \n")
    (workdir / "corpus" / "more.jsonl").write_text('{"text": "kept"}\n{"text": ""}\n')
    (workdir / "corpus" / "logo.png").write_bytes(b"\x89PNG")
    code, out, err = cli("ingest", "corpus", "--no-progress")
    assert code == 1
    assert f"{CORPUS_CHUNKS + 1} chunks" in out  # everything else, and the good line
    assert rows() == CORPUS_CHUNKS + 1
    assert "skipped: corpus/latin1.txt: not UTF-8" in err
    assert "skipped: corpus/empty.md: empty file" in err
    assert "skipped: corpus/more.jsonl:2:" in err
    assert "skipped 1 file(s) of other types: .png (1)" in err
    assert err.strip().splitlines()[-1].startswith("tidb-jina: error: 3 problem(s)")
    assert "Traceback" not in err


def test_glob_and_dry_run(cli, workdir):
    code, out, err = cli("ingest", "corpus", "--glob", "*.md", "--dry-run")
    assert code == 0, err
    assert not (workdir / "tidb_jina.db").exists()  # a dry run creates no database
    assert "3 file(s)" in out and "new, 0 changed, 0 unchanged" in out
    assert cli("ingest", "corpus", "--glob", "docs/*.md", "--no-progress")[0] == 0
    assert set(listed(cli)) == {
        "corpus/docs/jina-embeddings.md",
        "corpus/docs/rag-guide.md",
        "corpus/docs/tidb-vector-search.md",
    }
    code, _, err = cli("ingest", "corpus", "--glob", "*.pdf")
    assert_one_line_error(code, err, "matching --glob")


def test_sources_and_delete_with_confirmation(ingested, monkeypatch):
    before = listed(ingested)
    assert sum(before.values()) == CORPUS_CHUNKS
    code, out, _ = ingested("sources")
    assert code == 0 and f"{CORPUS_CHUNKS} rows from {len(before)} source(s)" in out

    code, _, err = ingested("delete", "--source", "corpus/faq.jsonl")  # no terminal: no
    assert_one_line_error(code, err, "3 row(s)", "--yes")
    assert rows() == CORPUS_CHUNKS
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda question: "y")
    code, out, _ = ingested("delete", "--source", "corpus/faq.jsonl")
    assert code == 0 and "Deleted 3 row(s)" in out
    assert "corpus/faq.jsonl" not in listed(ingested)

    code, out, _ = ingested("delete", "--filter", '{"topic": "cooking"}', "--yes")
    assert code == 0 and "Deleted 2 row(s)" in out
    assert rows() == CORPUS_CHUNKS - 5

    code, _, err = ingested("delete", "--source", "rag-guide.md", "--yes")
    assert_one_line_error(code, err, "corpus/docs/rag-guide.md")  # did you mean ...?
    code, _, err = ingested("delete", "--yes")
    assert_one_line_error(code, err, "--source", "--filter")


def test_library_and_cli_accept_the_same_connection_forms(cli, workdir):
    table = VectorTable("kb.db", table_name="t")  # a bare *.db path: the embedded engine
    table.upsert([[1.0, 0.0]], ids=["a"])
    table.close()
    assert (workdir / "kb.db").exists()
    assert cli("info", "--database-url", "kb.db", "--table", "t")[0] == 0
    from tidb_jina import ConfigurationError

    with pytest.raises(ConfigurationError, match="neither a database URL"):
        VectorTable("kb", table_name="t")
    code, _, err = cli("info", "--database-url", "kb")
    assert_one_line_error(code, err, "neither a database URL", ".db")


def test_doctor_advice_matches_the_engine_and_shows_the_model(ingested, workdir):
    code, out, _ = ingested("doctor", "--database-url", "missing/dir/kb.db")
    assert code == 1
    assert "folder exists" in out and "port" not in out
    code, out, _ = ingested("doctor")
    assert "filled by lexical" in out and "cosine" in out


def test_source_counts_on_tidb_group_by_the_unquoted_source(stub):
    from tidb_jina._cli import _catalog

    stub.add_table("docs", 3)
    table = VectorTable(stub.url, table_name="docs", engine_args=stub.engine_args())
    stub.reply("GROUP BY", columns=["s", "n"], rows=[("notes/a.md", 3), (None, 1)])
    assert _catalog.source_counts(table) == {"(no source)": 1, "notes/a.md": 3}
    (sql,) = [s for s in stub.sql("SELECT") if "GROUP BY" in s]
    assert "JSON_UNQUOTE(JSON_EXTRACT(docs.meta" in sql and "count(*)" in sql


def test_jsonl_records_removed_from_their_file_leave_the_table(cli, workdir):
    records = workdir / "corpus" / "notes.jsonl"
    records.write_text('{"text": "one"}\n{"text": "two"}\n{"id": "k3", "text": "three"}\n')
    assert cli("ingest", "corpus", "--no-progress")[0] == 0
    assert listed(cli)["corpus/notes.jsonl"] == 3
    # The first line goes: "two" moves to line 1; record k3 is renamed.
    records.write_text('{"text": "two"}\n{"id": "k4", "text": "three"}\n')
    code, out, _ = cli("ingest", "corpus", "--dry-run")
    assert code == 0 and "2 stale chunk row(s) would be removed" in out
    code, out, err = cli("ingest", "corpus", "--no-progress")
    assert code == 0, err
    assert "2 stale removed" in out
    table = VectorTable("sqlite:///tidb_jina.db")
    docs = sorted(r.document for r in table.get(filter={"source": "corpus/notes.jsonl"}))
    table.close()
    assert docs == ["three", "two"]  # no duplicate "three", no "one"
    # A file with a bad line keeps its rows: the bad line's old row is not stale.
    records.write_text('{"text": "two"}\n{"text": ""}\n')
    code, out, _ = cli("ingest", "corpus", "--no-progress")
    assert code == 1 and "0 stale removed" in out
    assert listed(cli)["corpus/notes.jsonl"] == 2


def test_a_dry_run_leaves_the_database_file_byte_for_byte(cli, workdir, monkeypatch):
    assert cli("ingest", "corpus", "--no-progress")[0] == 0
    (workdir / "corpus" / "docs" / "rag-guide.md").unlink()
    (workdir / "corpus" / "faq.jsonl").write_text('{"text": "only this"}\n')
    (workdir / "corpus" / "new.md").write_text("A new note about TiDB.\n")
    before = {p.name: p.read_bytes() for p in workdir.glob("tidb_jina.db*")}
    monkeypatch.setenv("TIDB_JINA_MODEL", "lexical-v2")  # a model change as well
    code, out, err = cli("ingest", "corpus", "--prune", "--dry-run")
    assert code == 0, err
    assert "model changed from lexical to lexical-v2" in out and "would be pruned" in out
    assert {p.name: p.read_bytes() for p in workdir.glob("tidb_jina.db*")} == before


def test_delete_refuses_an_empty_filter_and_both_selectors(ingested):
    code, _, err = ingested("delete", "--filter", "{}", "--yes")
    assert_one_line_error(code, err, "every row", "tidb-jina drop")
    code, _, err = ingested("delete", "--source", "corpus/faq.jsonl", "--filter", "{}")
    assert_one_line_error(code, err, "not both")
    assert rows() == CORPUS_CHUNKS


def test_a_model_change_keeps_the_table_when_the_new_provider_fails(cli, monkeypatch):
    assert cli("ingest", "corpus", "--no-progress")[0] == 0
    with FakeEmbeddingServer(api_key="jina_right") as server:
        monkeypatch.setenv("JINA_API_BASE_URL", server.url)
        monkeypatch.setenv("JINA_API_KEY", "jina_wrong")  # rejected: 401
        code, _, err = cli("ingest", "corpus", "--no-progress")
        assert code == 1 and "Traceback" not in err
        info = json.loads(cli("info", "--json")[1])
        assert (info["model"], info["rows"]) == ("lexical", CORPUS_CHUNKS)  # as it was
        server.reset()
        monkeypatch.setenv("JINA_API_KEY", "jina_right")
        code, out, err = cli("ingest", "corpus", "--no-progress", "--batch-size", "8")
        assert code == 0, err
        assert f"{CORPUS_CHUNKS} new" in out
        inputs = [len(r.body["input"]) for r in server.api_requests("/v1/embeddings")]
        assert sum(inputs) == CORPUS_CHUNKS  # the first batch was embedded once, not twice
    info = json.loads(cli("info", "--json")[1])
    assert (info["model"], info["rows"]) == ("jina-embeddings-v3", CORPUS_CHUNKS)


def test_delete_the_rows_sources_lists_as_having_no_source(ingested):
    table = VectorTable("sqlite:///tidb_jina.db")
    table.upsert([[1.0] * 256, [0.5] * 256], ids=["x", "y"], metadatas=[{}, {"topic": "t"}])
    table.close()
    assert listed(ingested)["(no source)"] == 2
    code, out, err = ingested("delete", "--source", "(no source)", "--yes")
    assert code == 0, err
    assert "Deleted 2 row(s)" in out
    assert "(no source)" not in listed(ingested) and rows() == CORPUS_CHUNKS


def test_a_bare_database_path_may_start_with_a_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with VectorTable("~/kb.db", table_name="t") as t:
        t.upsert([[1.0, 0.0]], ids=["a"])
    assert (tmp_path / "kb.db").is_file()
