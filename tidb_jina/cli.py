"""tidb-jina: ingest files into a TiDB vector table and search them from the shell.

    tidb-jina ingest docs/ notes.jsonl        # chunk, embed, upsert (re-runs skip stored chunks)
    tidb-jina ingest docs/ --prune --dry-run  # what would change, and the embedding work
    tidb-jina search "what is TiDB?" -k 3     # --mode vector|fulltext|hybrid, --filter, --json
    tidb-jina sources | tidb-jina delete --source docs/old.md --yes
    tidb-jina info | tidb-jina doctor | tidb-jina drop --yes

Connection: ``--database-url`` or ``TIDB_DATABASE_URL`` (default: the embedded engine in
``./tidb_jina.db``). Embeddings: ``--provider jina|hf|lexical`` (default: Jina when
``JINA_API_KEY`` is set, Hugging Face when ``HF_TOKEN`` is set, else the offline lexical
embedder, with a note on stderr). Errors are one line on stderr and exit status 1 (2 for
bad usage); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from tidb_jina import __version__
from tidb_jina._cli import CLIError, _commands, _settings
from tidb_jina.store import DEFAULT_TABLE_NAME

PROG = "tidb-jina"
EPILOG = (
    "environment: TIDB_DATABASE_URL, TIDB_JINA_TABLE, TIDB_JINA_PROVIDER, TIDB_JINA_MODEL, "
    "JINA_API_KEY (or JINAAI_API_KEY), HF_TOKEN. Run 'tidb-jina COMMAND --help' for the "
    "options of a command."
)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _common_options() -> _Parser:
    common = _Parser(add_help=False)
    group = common.add_argument_group("connection and embeddings")
    group.add_argument(
        "--database-url",
        metavar="URL",
        help="mysql+pymysql://USER:PASSWORD@HOST:4000/DB for TiDB, sqlite:///FILE or a file "
        f"path for the embedded engine (env TIDB_DATABASE_URL; default ./"
        f"{_settings.DEFAULT_DATABASE_FILE})",
    )
    group.add_argument(
        "--table",
        metavar="NAME",
        help=f"table name (env TIDB_JINA_TABLE; default {DEFAULT_TABLE_NAME})",
    )
    group.add_argument(
        "--provider",
        choices=_settings.PROVIDERS,
        help="embedding provider (env TIDB_JINA_PROVIDER; default: jina if JINA_API_KEY is "
        "set, hf if HF_TOKEN is set, else lexical: offline, word overlap)",
    )
    group.add_argument(
        "--model",
        metavar="NAME",
        help="embedding model (env TIDB_JINA_MODEL; default jina-embeddings-v3 / "
        f"{_settings.DEFAULT_HF_MODEL})",
    )
    group.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The ``tidb-jina`` argument parser."""
    parser = _Parser(prog=PROG, description=__doc__.split("\n")[0], epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _common_options()

    def add(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> _Parser:
        sub = commands.add_parser(name, parents=[common], help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    ingest = add(
        "ingest",
        _commands.ingest,
        "chunk text/markdown files and JSONL records, embed them and upsert them "
        "(ids from the path inside each folder given: re-running, from any directory, "
        "skips what is stored; a table of another model is re-embedded)",
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    ingest.add_argument(
        "--chunk-size", type=int, default=1000, metavar="N", help="characters (%(default)s)"
    )
    ingest.add_argument(
        "--chunk-overlap",
        type=int,
        default=200,
        metavar="N",
        help="characters shared by consecutive chunks (%(default)s)",
    )
    ingest.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="chunks per upsert (%(default)s)"
    )
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")
    ingest.add_argument(
        "--glob",
        action="append",
        metavar="PATTERN",
        help="only files whose name or path matches (e.g. '*.md', 'docs/*'); repeatable",
    )
    ingest.add_argument(
        "--prune",
        action="store_true",
        help="also delete the rows of files that are gone from the folders given",
    )
    ingest.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be added, changed and removed, and the embedding work; write nothing",
    )
    ingest.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first bad file or line (default: report it, skip it, exit 1)",
    )

    search = add(
        "search",
        _commands.search,
        "search the table by meaning (vector), by words (fulltext, BM25) or both (hybrid)",
    )
    search.add_argument("query", help="the question or words to search for")
    search.add_argument(
        "-k", type=int, default=4, metavar="N", help="number of results (%(default)s)"
    )
    search.add_argument("--filter", metavar="JSON", help="metadata filter, e.g. '{\"year\": 2025}'")
    search.add_argument(
        "--mode",
        choices=_commands.SEARCH_MODES,
        default="vector",
        help="by meaning, by words (BM25) or both fused (default %(default)s)",
    )
    search.add_argument("--json", action="store_true", help="print the hits as JSON")

    info = add("info", _commands.info, "show the table: rows, dimension, metric, index state")
    info.add_argument("--json", action="store_true", help="print as JSON")
    sources = add("sources", _commands.sources, "list the source files and their row counts")
    sources.add_argument("--json", action="store_true", help="print as JSON")
    delete = add(
        "delete",
        _commands.delete,
        "delete the rows of one source file, or the rows a metadata filter matches",
    )
    delete.add_argument("--source", metavar="NAME", help="a source as `sources` lists it")
    delete.add_argument("--filter", metavar="JSON", help="metadata filter, e.g. '{\"year\": 2023}'")
    delete.add_argument("--yes", action="store_true", help="delete without asking")
    add("doctor", _commands.doctor, "check the database, the table and the API keys")
    drop = add("drop", _commands.drop, "drop the table and all its rows")
    drop.add_argument("--yes", action="store_true", help="confirm the drop")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (never raises unless ``--debug``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        _error("interrupted; ingest is resumable: run the same command again")
        return 130
    except CLIError as exc:
        if args.debug:
            raise
        _error(_masked(str(exc), args))
        return 1
    except Exception as exc:  # one line for the user, the traceback only with --debug
        if args.debug:
            raise
        from tidb_jina import TiDBJinaError

        if isinstance(exc, (TiDBJinaError, OSError)):
            _error(_masked(str(exc), args) or type(exc).__name__)
        else:
            text = _masked(str(exc), args)
            _error(f"unexpected {type(exc).__name__}: {text} (re-run with --debug for details)")
        return 1


def _masked(message: str, args: argparse.Namespace) -> str:
    """``message`` without the database password (should anything have quoted it)."""
    import os

    from tidb_jina._redact import connection_secrets, redact

    url = getattr(args, "database_url", None) or os.environ.get("TIDB_DATABASE_URL")
    return redact(message, connection_secrets(url)) if url else message


def _error(message: str) -> None:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
