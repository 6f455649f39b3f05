"""Full-text search on the embedded engine: an FTS5 index that also finds CJK words.

FTS5's ``unicode61`` tokenizer splits on spaces and punctuation, so a Chinese or Japanese
sentence is one long token and 東京 or 首都 never match inside it (TiDB's MULTILINGUAL
parser segments them). SQLite's ``trigram`` tokenizer cannot match two-character words,
which are most CJK words. So the text is analysed in Python, as Lucene's CJK analyzer
does it: every run of Han, Hiragana, Katakana or Hangul characters is indexed as its
characters and its overlapping bigrams (東京は -> 東 京 は 東京 京は); everything else is
left to ``unicode61`` (lower-cased, diacritics removed), so English ranks as before.

Index (``<table>__fts2``, a regular FTS5 table holding the analysed text, rowid = the
table's rowid), kept exact for every writer, ours or plain SQL, without SQL functions
of ours in the triggers (any tool can still write the file):

* AFTER DELETE / AFTER UPDATE OF document: the row leaves the index (plain SQL);
* AFTER INSERT / AFTER UPDATE OF document: its rowid joins ``<table>__fts2_pending``;
* before each search, pending rows are analysed and indexed in one write transaction
  (usually there are none: a one-row probe).

Queries follow TiDB's ``FTS_MATCH_WORD``: the query's terms are OR-ed and ranked by
BM25; a CJK word of two or more characters is searched by its bigrams, a single
character by itself. Punctuation and FTS5 syntax in the user's text are never
interpreted (each term is a quoted string).

Older files have ``<table>__fts`` (unicode61 over the ``document`` column, kept by
triggers); on its first full-text search such a table migrates: the old index and its
triggers are dropped and the new one is built from the rows.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

_WORD = re.compile(r"\w+", re.UNICODE)
# Han (incl. extension A and compatibility), Hiragana, Katakana (+ phonetic ext.,
# half-width), Hangul syllables and jamo: the scripts written without spaces.
_CJK = (
    "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\uff66-\uff9f\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
)
_CJK_RUN = re.compile(f"[{_CJK}]+")
_TERMS = re.compile(f"[{_CJK}]+|[^\\W{_CJK}]+", re.UNICODE)
SYNC_BATCH = 500
BUILD_BATCH = 5_000


def fts_name(table_name: str) -> str:
    """The index of tables made before CJK support (unicode61 over ``document``)."""
    return f"{table_name}__fts"


def index_name(table_name: str) -> str:
    return f"{table_name}__fts2"


def pending_name(table_name: str) -> str:
    return f"{table_name}__fts2_pending"


# --- analysis ------------------------------------------------------------------------------


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def cjk_terms(run: str) -> list[str]:
    """A CJK run's overlapping bigrams (a single character: itself)."""
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def analyse(document: str | None) -> str:
    """The text FTS5 indexes for ``document``: CJK runs become their characters and
    bigrams (separated by spaces); other text stays for ``unicode61`` to split."""
    if not document:
        return ""
    if document.isascii():  # nothing to normalise or split: unicode61 does the rest
        return document
    return _CJK_RUN.sub(_expand, _normalise(document))


def _expand(match: re.Match[str]) -> str:
    run = match.group()
    if len(run) == 1:
        return f" {run} "
    return f" {' '.join(run)} {' '.join(map(str.__add__, run, run[1:]))} "


def query_terms(text: str) -> list[str]:
    """The distinct terms of a query: words, and the bigrams of CJK runs."""
    terms: list[str] = []
    for piece in _TERMS.findall(_normalise(text)):
        if _CJK_RUN.fullmatch(piece):
            terms.extend(cjk_terms(piece))
        else:
            terms.extend(_WORD.findall(piece))
    return list(dict.fromkeys(terms))


def match_expression(text: str) -> str | None:
    """FTS5 query for ``text``: its terms, each quoted, OR-ed. None if it has none."""
    terms = query_terms(text)
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


# --- DDL -----------------------------------------------------------------------------------


def ddl(dialect: sa.Dialect, table_name: str) -> list[str]:
    """CREATE statements for the index, its queue and its triggers (then :func:`build`).

    DDL cannot bind identifiers; they are validated table names quoted by the dialect,
    and no value ever enters these strings (hence the S608 exemptions).
    """
    q = dialect.identifier_preparer.quote
    table, fts, pending = q(table_name), q(index_name(table_name)), q(pending_name(table_name))
    unindex = f"DELETE FROM {fts} WHERE rowid = old.rowid;"  # noqa: S608
    dequeue = f"DELETE FROM {pending} WHERE rowid = old.rowid;"  # noqa: S608
    enqueue = f"INSERT OR IGNORE INTO {pending}(rowid) VALUES (new.rowid);"  # noqa: S608
    trigger = table_name + "__fts2_"
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5(terms, "
        "tokenize='unicode61 remove_diacritics 2')",
        f"CREATE TABLE IF NOT EXISTS {pending} (rowid INTEGER PRIMARY KEY)",
        f"CREATE TRIGGER IF NOT EXISTS {q(trigger + 'ai')} AFTER INSERT ON {table} "
        f"BEGIN {enqueue} END",
        f"CREATE TRIGGER IF NOT EXISTS {q(trigger + 'ad')} AFTER DELETE ON {table} "
        f"BEGIN {unindex} {dequeue} END",
        f"CREATE TRIGGER IF NOT EXISTS {q(trigger + 'au')} AFTER UPDATE OF document "
        f"ON {table} BEGIN {unindex} {enqueue} END",
    ]


def old_index_ddl(dialect: sa.Dialect, table_name: str) -> list[str]:
    """Drop the pre-CJK index and its triggers (a table migrating to the new index)."""
    q = dialect.identifier_preparer.quote
    triggers = [f"DROP TRIGGER IF EXISTS {q(table_name + s)}" for s in ("__fts_ai", "__fts_ad")]
    return [
        *triggers,
        f"DROP TRIGGER IF EXISTS {q(table_name + '__fts_au')}",
        f"DROP TABLE IF EXISTS {q(fts_name(table_name))}",
    ]


def drop_ddl(dialect: sa.Dialect, table_name: str) -> list[str]:
    """What goes before the table is dropped (its triggers go with it)."""
    q = dialect.identifier_preparer.quote
    return [
        f"DROP TABLE IF EXISTS {q(fts_name(table_name))}",
        f"DROP TABLE IF EXISTS {q(index_name(table_name))}",
        f"DROP TABLE IF EXISTS {q(pending_name(table_name))}",
    ]


def exists_statement(table_name: str) -> sa.TextClause:
    """Counts 1 when the index exists (and 2 when the pre-CJK one is still there too)."""
    return sa.text(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = :name"
    ).bindparams(name=index_name(table_name))


def old_index_exists_statement(table_name: str) -> sa.TextClause:
    return sa.text(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = :name"
    ).bindparams(name=fts_name(table_name))


# --- keeping the index in step --------------------------------------------------------------


def pending_probe(dialect: sa.Dialect, table_name: str) -> str:
    return f"SELECT 1 FROM {dialect.identifier_preparer.quote(pending_name(table_name))} LIMIT 1"  # noqa: S608


def sync(conn: sa.Connection, table_name: str) -> int:
    """Index every queued row (inside the caller's write transaction); returns how many."""
    q = conn.dialect.identifier_preparer.quote
    table, fts, pending = q(table_name), q(index_name(table_name)), q(pending_name(table_name))
    select = sa.text(
        f"SELECT p.rowid, t.document FROM {pending} p "  # noqa: S608
        f"LEFT JOIN {table} t ON t.rowid = p.rowid ORDER BY p.rowid LIMIT :n"
    )
    unindex = sa.text(f"DELETE FROM {fts} WHERE rowid = :rowid")  # noqa: S608
    index = sa.text(f"INSERT INTO {fts}(rowid, terms) VALUES (:rowid, :terms)")  # noqa: S608
    dequeue = sa.text(f"DELETE FROM {pending} WHERE rowid = :rowid")  # noqa: S608
    done = 0
    while rows := conn.execute(select, {"n": SYNC_BATCH}).all():
        ids = [{"rowid": r[0]} for r in rows]
        conn.execute(unindex, ids)
        terms = [{"rowid": r[0], "terms": analyse(r[1])} for r in rows if r[1]]
        if terms:
            conn.execute(index, terms)
        conn.execute(dequeue, ids)
        done += len(rows)
    return done


def build(conn: sa.Connection, table_name: str) -> int:
    """Index every row from scratch (inside the caller's write transaction)."""
    q = conn.dialect.identifier_preparer.quote
    table, fts, pending = q(table_name), q(index_name(table_name)), q(pending_name(table_name))
    conn.exec_driver_sql(f"DELETE FROM {fts}")  # noqa: S608
    conn.exec_driver_sql(f"DELETE FROM {pending}")  # noqa: S608
    rows = conn.exec_driver_sql(
        f"SELECT rowid, document FROM {table} WHERE document IS NOT NULL"  # noqa: S608
    ).all()
    index = f"INSERT INTO {fts}(rowid, terms) VALUES (?, ?)"  # noqa: S608
    for start in range(0, len(rows), BUILD_BATCH):
        batch = [(r[0], analyse(r[1])) for r in rows[start : start + BUILD_BATCH]]
        conn.exec_driver_sql(index, batch)  # type: ignore[arg-type]
    return len(rows)


def search_statement(
    dialect: sa.Dialect,
    table: sa.Table,
    match: str,
    k: int,
    where: sa.ColumnElement[bool] | None,
) -> sa.Select[tuple[str, str | None, object, float]]:
    """Rows matching ``match``, best BM25 first (SQLite's bm25() is negative: negate it)."""
    name = index_name(table.name)
    fts: sa.ColumnClause[Any] = sa.literal_column(dialect.identifier_preparer.quote(name))
    fts_table = sa.table(name, sa.column("rowid"))
    text_score = (-sa.func.bm25(fts)).label("text_score")
    stmt = (
        sa.select(table.c.id, table.c.document, table.c.meta, text_score)
        .select_from(
            fts_table.join(table, fts_table.c.rowid == sa.literal_column(f"{table.name}.rowid"))
        )
        .where(fts.op("MATCH")(match))
    )
    if where is not None:
        stmt = stmt.where(where)
    return stmt.order_by(sa.desc("text_score")).limit(k)


def run(conn: sa.Connection, statements: Iterable[str]) -> None:
    for statement in statements:
        conn.exec_driver_sql(statement)
