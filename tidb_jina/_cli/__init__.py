"""The ``tidb-jina`` command line, in pieces (the entry point is :mod:`tidb_jina.cli`).

- ``_sources``: files and folders to chunks with deterministic ids;
- ``_progress``: a dependency-free progress bar for stderr;
- ``_settings``: the database URL, table and embedding provider from flags and env vars;
- ``_ingest``: ingest (skip, re-embed, prune, dry run, problems skipped and reported);
- ``_catalog``: rows per source (``sources``, ``--prune``, ``delete --source``);
- ``_commands``: search, info, sources, delete, doctor and drop.
"""


class CLIError(Exception):
    """A user error the command line reports as one line (exit status 1)."""
