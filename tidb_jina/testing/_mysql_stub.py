"""A recording stand-in for a TiDB server, at the PyMySQL connection level.

``MySQLRecorder`` lets a test (or a benchmark) run ``VectorTable`` on its real TiDB code
path without a server. Its connections are real PyMySQL ``Connection`` objects that never
open a socket: PyMySQL itself escapes the parameters (``cursor.mogrify``) and rewrites
``executemany`` INSERTs into multi-row statements, so each recorded statement is exactly
the text that would go on the wire. Every ``COM_QUERY`` (statement, ``COMMIT``,
``ROLLBACK``) and ``COM_PING`` is recorded as one :class:`RecordedStatement`.

How a test gets a table whose connections talk to the recorder::

    recorder = MySQLRecorder()              # or MySQLRecorder(starter=True)
    table = VectorTable(recorder.url, table_name="docs", engine_args=recorder.engine_args())
    table.upsert([[1.0, 0.0, 0.0]], ids=["a"])
    assert recorder.sql("INSERT")[0].startswith("INSERT INTO docs")

``recorder.url`` names a self-managed host (``tidb.stub``) or, with ``starter=True``, a
TiDB Cloud Starter gateway host; neither is ever resolved, because ``engine_args()`` hands
SQLAlchemy a ``creator`` that returns stub connections. ``recorder.engine()`` gives the
same as an ``Engine``. The stub is synchronous (PyMySQL): an async twin (aiomysql) would
try to connect for real.

What it answers:

* what SQLAlchemy's MySQL dialect asks on connect (server version
  ``8.0.11-TiDB-v8.5.0``, sql_mode, lower_case_table_names, isolation level, database);
* ``CREATE TABLE`` / ``DROP TABLE`` / ``CREATE ... INDEX``: remembered, so
  ``INFORMATION_SCHEMA.COLUMNS`` (and ``DESCRIBE``) answer the created columns, and
  ``INFORMATION_SCHEMA.STATISTICS`` / ``TIFLASH_INDEXES`` the created indexes (fully
  built); :meth:`MySQLRecorder.add_table` declares a table that exists beforehand;
* a vector search (``VEC_..._DISTANCE(...) ... LIMIT k``): ``k`` made-up rows (``doc-0``,
  ``doc-1``, ... at increasing distances), or at most ``search_hits`` rows when set;
* ``SELECT count(*)``: 0; any other ``SELECT``: no rows; other statements: 0 rows affected.

:meth:`MySQLRecorder.reply` overrides the answer to statements matching a pattern (rows,
affected-row count, or a MySQL error by code); :meth:`MySQLRecorder.fail` is its short form
for errors, e.g. a cluster without TiFlash::

    recorder.fail("SET TIFLASH REPLICA", 1105, "the tiflash replica count: 1 should be "
                  "less than the total tiflash server count: 0")
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pymysql
import sqlalchemy as sa
from pymysql.cursors import Cursor

SERVER_VERSION = "8.0.11-TiDB-v8.5.0"
SELF_MANAGED_HOST = "tidb.stub"
STARTER_HOST = "gateway01.us-east-1.prod.aws.tidbcloud.com"
# Kinds that are not SQL statements of the caller: transaction control and pings.
CONTROL_KINDS = frozenset({"PING", "BEGIN", "COMMIT", "ROLLBACK"})

_CREATE_TABLE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?`?(\w+)`?\s*\(", re.IGNORECASE)
_DROP_TABLE = re.compile(r"DROP TABLE (?:IF EXISTS )?`?(\w+)`?", re.IGNORECASE)
_CREATE_INDEX = re.compile(
    r"CREATE (?:(VECTOR|FULLTEXT|UNIQUE) )?INDEX (?:IF NOT EXISTS )?`?(\w+)`? ON `?(\w+)`?",
    re.IGNORECASE,
)
_DROP_INDEX = re.compile(r"ALTER TABLE `?(\w+)`? DROP INDEX `?(\w+)`?", re.IGNORECASE)
_FROM = re.compile(r"\s+FROM\s", re.IGNORECASE)
_COMMENT = re.compile(r"\bCOMMENT\s+['\"]([^'\"]*)['\"]", re.IGNORECASE)
_COLLATE = re.compile(r"\bCOLLATE\s+`?(\w+)`?", re.IGNORECASE)
_FROM_TABLE = re.compile(r"\bFROM `?(\w+)`?", re.IGNORECASE)
_VECTOR_FUNCTION = re.compile(r"\bVEC_\w*(DISTANCE|PRODUCT)\s*\(", re.IGNORECASE)
_LIMIT = re.compile(r"LIMIT (\d+)\s*$", re.IGNORECASE)
_TABLE_NAME = re.compile(r"TABLE_NAME = '(\w+)'|TIDB_TABLE = '(\w+)'", re.IGNORECASE)
_SETTINGS = {
    "sql_mode": "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION",
    "lower_case_table_names": "2",
}
_NOT_COLUMNS = ("PRIMARY", "KEY", "INDEX", "UNIQUE", "CONSTRAINT", "FULLTEXT", "VECTOR")


@dataclass(frozen=True)
class RecordedStatement:
    """One round trip. ``sql`` is the text as sent (parameters escaped in by PyMySQL);
    ``template`` and ``params`` are what the caller passed to ``cursor.execute`` (for a
    multi-row INSERT built by ``executemany``, the built text and None)."""

    kind: str  # first keyword, upper case ("SELECT", "INSERT", ...), or a CONTROL_KINDS one
    sql: str
    nbytes: int
    template: str | None = None
    params: Any = None


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    columns: Sequence[str]
    rows: Sequence[tuple[Any, ...]]
    rowcount: int | None
    error: tuple[int, str] | None
    times: int | None  # None: every match


@dataclass
class _Table:
    columns: list[tuple[str, str]]  # (name, lower-case type), as INFORMATION_SCHEMA says
    comments: dict[str, str] = field(default_factory=dict)  # column -> COMMENT '...'
    indexes: dict[str, str] = field(default_factory=dict)  # name -> kind
    collations: dict[str, str] = field(default_factory=dict)  # column -> COLLATE ...


class MySQLRecorder:
    """Records every round trip of the engines built from :meth:`engine_args`.

    Args:
        starter: name a TiDB Cloud Starter host in :attr:`url` (auto-embedding, full-text,
            ``ADD_COLUMNAR_REPLICA_ON_DEMAND``) instead of a self-managed one.
        search_hits: answer vector searches with at most this many rows (None: ``k``).
        keep_text: keep each statement's text (False keeps only kinds and sizes, for
            benchmarks that send hundreds of megabytes).
    """

    def __init__(
        self, *, starter: bool = False, search_hits: int | None = None, keep_text: bool = True
    ) -> None:
        self.host = STARTER_HOST if starter else SELF_MANAGED_HOST
        self.search_hits = search_hits
        self.keep_text = keep_text
        self.statements: list[RecordedStatement] = []
        self.connections = 0
        self.tables: dict[str, _Table] = {}
        self._rules: list[_Rule] = []

    @property
    def url(self) -> str:
        return f"mysql+pymysql://root:stub-password@{self.host}:4000/test"

    def engine_args(self) -> dict[str, Any]:
        """``create_engine`` arguments (``VectorTable(..., engine_args=...)``): a creator
        of stub connections, so the URL's host is never resolved."""
        return {"creator": lambda: StubConnection(self)}

    def engine(self) -> sa.Engine:
        """An Engine on :attr:`url` set up as ``tidb_jina`` sets up TiDB engines."""
        from tidb_jina.store import connect  # the store imports nothing from here

        return connect(self.url, engine_args=self.engine_args())

    # --- scripting answers --------------------------------------------------------------

    def add_table(
        self,
        name: str,
        dimension: int | None,
        *,
        id_length: int = 512,
        id_collation: str = "utf8mb4_bin",
        indexes: dict[str, str] | None = None,
    ) -> None:
        """Declare a vector table that exists before the test starts. Its ``id`` has
        TiDB's default collation unless told (``utf8mb4_bin``, PAD SPACE, as the peers'
        tables have); ``indexes`` maps index names to kinds (``"vector"``,
        ``"fulltext"``)."""
        vector = f"vector({dimension})" if dimension else "vector"
        self.tables[name] = _Table(
            [
                ("id", f"varchar({id_length})"),
                ("embedding", vector),
                ("document", "mediumtext"),
                ("meta", "json"),
                ("create_time", "datetime"),
                ("update_time", "datetime"),
            ],
            indexes=dict(indexes or {}),
            collations={"id": id_collation},
        )

    def reply(
        self,
        pattern: str,
        *,
        columns: Sequence[str] = (),
        rows: Sequence[tuple[Any, ...]] = (),
        rowcount: int | None = None,
        error: tuple[int, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer statements matching the regular expression ``pattern`` (searched,
        case-insensitive) with ``rows`` under ``columns``, or ``rowcount`` affected rows,
        or raise the PyMySQL error for MySQL ``error=(code, message)``. ``times`` limits
        how many statements the rule answers (None: all). Later rules win."""
        compiled = re.compile(pattern, re.IGNORECASE)
        self._rules.insert(0, _Rule(compiled, columns, rows, rowcount, error, times))

    def fail(self, pattern: str, code: int, message: str, *, times: int | None = None) -> None:
        """Refuse statements matching ``pattern`` with MySQL error ``code``."""
        self.reply(pattern, error=(code, message), times=times)

    # --- reading the record -------------------------------------------------------------

    def reset(self) -> None:
        """Forget the statements recorded so far (tables and rules stay)."""
        self.statements.clear()
        self.connections = 0

    def sql(self, *kinds: str) -> list[str]:
        """Texts of the recorded SQL statements (not pings or transaction control),
        optionally only those of ``kinds``."""
        return [s.sql for s in self.statements if _selected(s.kind, kinds)]

    def kinds(self) -> Counter[str]:
        return Counter(s.kind for s in self.statements)

    def count(self, *kinds: str) -> int:
        """Round trips of ``kinds`` (all, pings and COMMITs included, when none given)."""
        return sum(1 for s in self.statements if not kinds or s.kind in kinds)

    def bytes(self, *kinds: str) -> int:
        return sum(s.nbytes for s in self.statements if not kinds or s.kind in kinds)

    def largest(self, kind: str) -> int:
        return max((s.nbytes for s in self.statements if s.kind == kind), default=0)

    # --- the server side ----------------------------------------------------------------

    def _record(self, statement: RecordedStatement) -> None:
        if not self.keep_text and statement.kind not in CONTROL_KINDS:
            statement = RecordedStatement(statement.kind, statement.sql[:200], statement.nbytes)
        self.statements.append(statement)

    def _answer(self, sql: str) -> tuple[Sequence[str], Sequence[tuple[Any, ...]], int]:
        """Column names, rows and affected rows for one statement (or raise its error)."""
        for rule in self._rules:
            if rule.times != 0 and rule.pattern.search(sql):
                if rule.times is not None:
                    rule.times -= 1
                if rule.error is not None:
                    raise _mysql_error(*rule.error)
                rowcount = len(rule.rows) if rule.rowcount is None else rule.rowcount
                return rule.columns, rule.rows, rowcount
        self._track_ddl(sql)
        names, rows = self._default(sql)
        return names, rows, len(rows)

    def _track_ddl(self, sql: str) -> None:
        text = sql.lstrip()
        if created := _CREATE_TABLE.match(text):
            self.tables.setdefault(created.group(1), _table_of(text[created.end() :]))
        elif dropped := _DROP_TABLE.match(text):
            self.tables.pop(dropped.group(1), None)
        elif index := _CREATE_INDEX.match(text):
            kind, name, table = index.groups()
            if table in self.tables:
                self.tables[table].indexes[name] = (kind or "btree").lower()
        elif dropped_index := _DROP_INDEX.match(text):
            table, name = dropped_index.groups()
            if table in self.tables:
                self.tables[table].indexes.pop(name, None)

    def _default(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        head = sql[:300].upper()
        if head.startswith("SHOW VARIABLES LIKE"):
            name = sql.split("'")[1]
            return ["Variable_name", "Value"], [(name, _SETTINGS.get(name, ""))]
        if head.startswith("SHOW WARNINGS"):
            return ["Level", "Code", "Message"], []
        if "SELECT VERSION()" in head:
            return ["VERSION()"], [(SERVER_VERSION,)]
        if "ISOLATION" in head:
            return ["@@transaction_isolation"], [("REPEATABLE-READ",)]
        if head.startswith("SELECT @@"):
            name = sql.strip()[len("SELECT @@") :]
            return [f"@@{name}"], [(_SETTINGS.get(name, ""),)]
        if "SELECT DATABASE()" in head:
            return ["DATABASE()"], [("test",)]
        if "INFORMATION_SCHEMA.COLUMNS" in head:
            return self._columns(sql)
        if "INFORMATION_SCHEMA.STATISTICS" in head:
            table = self._named_table(sql)
            indexes = table.indexes if table else {}
            if "COLUMN_NAME = 'document'" in sql:  # only a full-text index covers it
                indexes = {n: kind for n, kind in indexes.items() if kind == "fulltext"}
            return ["INDEX_NAME"], [(name,) for name in indexes]
        if "INFORMATION_SCHEMA.TIFLASH_INDEXES" in head:
            return self._tiflash_indexes(sql)
        if head.startswith("DESCRIBE"):
            name = sql.split()[-1].split(".")[-1].strip("`")
            table = self.tables.get(name)
            return ["Field", "Type"], list(table.columns) if table else []
        if head.startswith("SELECT COUNT(*)"):
            return ["count"], [(0,)]
        if head.startswith("SELECT"):
            return self._select(sql)
        return [], []

    def _named_table(self, sql: str) -> _Table | None:
        match = _TABLE_NAME.search(sql)
        return self.tables.get(match.group(1) or match.group(2)) if match else None

    def _columns(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        table = self._named_table(sql)
        if "COLUMN_COMMENT" in sql:  # tidb-vector's probe of the embedding column
            found = [(t, table.comments.get(n, "")) for n, t in table.columns] if table else []
            return ["COLUMN_TYPE", "COLUMN_COMMENT"], [
                c for c in found if c[0].startswith("vector")
            ]
        if "COLLATION_NAME" in sql:
            collations = table.collations if table else {}
            with_collation: list[tuple[Any, ...]] = [
                (n, t, collations.get(n)) for n, t in (table.columns if table else [])
            ]
            return ["COLUMN_NAME", "COLUMN_TYPE", "COLLATION_NAME"], with_collation
        return ["COLUMN_NAME", "COLUMN_TYPE"], list(table.columns) if table else []

    def _tiflash_indexes(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        names = [
            "INDEX_NAME",
            "INDEX_KIND",
            "ROWS_STABLE_INDEXED",
            "ROWS_STABLE_NOT_INDEXED",
            "ROWS_DELTA_INDEXED",
            "ROWS_DELTA_NOT_INDEXED",
            "ERROR_MESSAGE",
        ]
        table = self._named_table(sql)
        kind = "fulltext" if "INDEX_KIND = 'FullText'" in sql else "vector"
        built = [n for n, k in table.indexes.items() if k == kind] if table else []
        label = "FullText" if kind == "fulltext" else "Vector"
        return names, [(n, label, 0, 0, 0, 0, None) for n in built]

    def _select(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        names = _select_names(sql)
        limit = _LIMIT.search(sql)
        if not _VECTOR_FUNCTION.search(sql) or limit is None:
            return names, []
        n = int(limit.group(1))
        if self.search_hits is not None:
            n = min(n, self.search_hits)
        source = _FROM_TABLE.search(sql)
        table = self.tables.get(source.group(1)) if source else None
        vector = dict(table.columns).get("embedding", "") if table else ""
        dimension = int(vector[7:-1]) if vector.startswith("vector(") else 3
        made = {
            "id": lambda i: f"doc-{i}",
            "document": lambda i: f"text {i}",
            "meta": lambda i: '{"group": 3}',
            "distance": lambda i: 0.5 + i / 1000,
            "embedding": lambda i: "[" + ",".join(["0.5"] * dimension) + "]",
        }
        # By name, else by suffix (other libraries label columns "..._document" etc.)
        makers = [
            made.get(n) or next((m for s, m in made.items() if n.endswith(s)), None) for n in names
        ]
        return names, [tuple(m(i) if m else None for m in makers) for i in range(n)]


def _selected(kind: str, kinds: tuple[str, ...]) -> bool:
    return kind in kinds if kinds else kind not in CONTROL_KINDS


def _mysql_error(code: int, message: str) -> pymysql.err.MySQLError:
    """The exception PyMySQL raises when the server answers ``code`` (its own mapping)."""
    errorclass = pymysql.err.error_map.get(code)
    if errorclass is None:
        errorclass = pymysql.err.InternalError if code < 1000 else pymysql.err.OperationalError
    return errorclass(code, message)


def _top_level_items(body: str) -> tuple[list[str], int]:
    """Split ``body`` at top-level commas until its closing parenthesis (or FROM at
    depth 0); returns the items and where the scan stopped."""
    depth, quoted, escaped, start, items = 0, False, False, 0, []
    for i, ch in enumerate(body):
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                items.append(body[start:i])
                return items, i
            depth -= 1
        elif depth == 0 and ch == ",":
            items.append(body[start:i])
            start = i + 1
        elif depth == 0 and ch.isspace() and _FROM.match(body, i):
            items.append(body[start:i])
            return items, i
    items.append(body[start:])
    return items, len(body)


def _table_of(body: str) -> _Table:
    """Columns (name, type), their comments and collations, and the inline ``FULLTEXT`` /
    ``VECTOR`` indexes, from a CREATE TABLE body."""
    table = _Table([])
    for item in _top_level_items(body)[0]:
        words = item.split()
        if len(words) >= 3 and words[0].upper() in ("FULLTEXT", "VECTOR"):
            if words[1].upper() in ("INDEX", "KEY"):
                table.indexes[words[2].split("(")[0].strip("`")] = words[0].lower()
        elif len(words) >= 2 and words[0].upper() not in _NOT_COLUMNS:
            name = words[0].strip("`")
            table.columns.append((name, words[1].lower()))
            if comment := _COMMENT.search(item):
                table.comments[name] = comment.group(1)
            if collation := _COLLATE.search(item):
                table.collations[name] = collation.group(1)
    return table


def _select_names(sql: str) -> list[str]:
    """Result column names of the outermost SELECT."""
    names = []
    for item in _top_level_items(sql.lstrip()[len("SELECT ") :])[0]:
        item = item.strip()
        alias = re.search(r"\bAS\s+`?(\w+)`?$", item, re.IGNORECASE)
        names.append(alias.group(1) if alias else item.split(".")[-1].strip("`"))
    return names


def _kind(sql: str) -> str:
    words = sql.lstrip().split(None, 1)
    return words[0].upper() if words else "other"


class RecordingCursor(Cursor):
    """PyMySQL's cursor (its mogrify and executemany), with the wire replaced by a record."""

    _call: tuple[Any, Any] | None = None

    def execute(self, query: Any, args: Any = None) -> int:
        self._call = (query, args)
        return super().execute(query, args)

    def _query(self, q: Any) -> int:
        connection: StubConnection = self.connection
        raw = q.encode(connection.encoding) if isinstance(q, str) else bytes(q)
        sql = raw.decode(connection.encoding)
        call, self._call = self._call, None
        template = call[0] if call and call[1] is not None else None
        params = call[1] if call else None
        connection.recorder._record(RecordedStatement(_kind(sql), sql, len(raw), template, params))
        names, rows, rowcount = connection.recorder._answer(sql)
        self._clear_result()
        self.rownumber = 0
        if names:
            self.description = tuple((n, 253, None, None, None, None, True) for n in names)
            self._rows = tuple(rows)
            self.rowcount = len(rows)
        else:
            self.rowcount = rowcount
        return int(self.rowcount)


class StubConnection(pymysql.connections.Connection):
    """A PyMySQL connection that never connects; round trips go to the recorder."""

    def __init__(self, recorder: MySQLRecorder) -> None:
        super().__init__(
            host=recorder.host,
            user="root",
            database="test",
            charset="utf8mb4",
            defer_connect=True,
            cursorclass=RecordingCursor,
        )
        self.recorder = recorder
        self.server_version = SERVER_VERSION
        self.server_status = 0
        self._stub_open = True
        recorder.connections += 1

    @property
    def open(self) -> bool:
        return self._stub_open

    def _control(self, kind: str) -> None:
        self.recorder._record(RecordedStatement(kind, kind, len(kind)))

    def ping(self, reconnect: bool = False) -> None:
        self.recorder._record(RecordedStatement("PING", "", 1))

    def begin(self) -> None:
        self._control("BEGIN")

    def commit(self) -> None:
        self._control("COMMIT")

    def rollback(self) -> None:
        self._control("ROLLBACK")

    def autocommit(self, value: bool) -> None:
        self.autocommit_mode = bool(value)

    def get_autocommit(self) -> bool:
        return bool(self.autocommit_mode)

    def close(self) -> None:
        self._stub_open = False

    def _force_close(self) -> None:
        self._stub_open = False
