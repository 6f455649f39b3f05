"""A recording stand-in for a TiDB server, at the PyMySQL connection level.

``Recorder.engine_args()`` gives ``create_engine`` a ``creator`` whose connections are real
PyMySQL ``Connection`` objects that never open a socket: PyMySQL itself escapes the
parameters (``cursor.mogrify``) and rewrites ``executemany`` INSERTs into multi-row
statements (at most ``Cursor.max_stmt_length`` bytes each), so the recorded statements and
their bytes are exactly what would be sent. Each ``COM_QUERY`` (statement, COMMIT,
ROLLBACK) and ``COM_PING`` is one round trip.

The stub answers what SQLAlchemy's MySQL dialect asks on connect (server version
"8.0.11-TiDB-v8.5.0", sql_mode, lower_case_table_names, isolation level, current
database), INFORMATION_SCHEMA column reads (nothing before a CREATE TABLE, the created
columns after) and vector searches (``k`` made-up rows, or none); other SELECTs are empty.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pymysql
from pymysql.cursors import Cursor

SERVER_VERSION = "8.0.11-TiDB-v8.5.0"
_CREATE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?`?(\w+)`?", re.IGNORECASE)
_FROM = re.compile(r"\s+FROM\s", re.IGNORECASE)
_LIMIT = re.compile(r"LIMIT (\d+)\s*$", re.IGNORECASE)
_SETTINGS = {
    "sql_mode": "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION",
    "lower_case_table_names": "2",
}


@dataclass
class Recorder:
    """Counts round trips and bytes; shared by every connection of one engine."""

    dimension: int
    search_rows: bool = True  # answer a vector search with LIMIT rows (else none)
    statements: list[tuple[str, int]] = field(default_factory=list)  # (kind, bytes)
    created: set[str] = field(default_factory=set)
    connections: int = 0

    def engine_args(self) -> dict[str, Any]:
        return {"creator": lambda: StubConnection(self)}

    def reset(self) -> None:
        self.statements.clear()
        self.connections = 0

    def record(self, kind: str, nbytes: int) -> None:
        self.statements.append((kind, nbytes))

    def kinds(self) -> Counter[str]:
        return Counter(kind for kind, _ in self.statements)

    def count(self, *kinds: str) -> int:
        return sum(1 for kind, _ in self.statements if not kinds or kind in kinds)

    def bytes(self, *kinds: str) -> int:
        return sum(n for kind, n in self.statements if not kinds or kind in kinds)

    def largest(self, kind: str) -> int:
        return max((n for k, n in self.statements if k == kind), default=0)

    def answer(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows for one statement (names empty: not a result set)."""
        head = sql[:300].upper()
        if created := _CREATE.match(sql.lstrip()):
            self.created.add(created.group(1))
        if head.startswith("SHOW VARIABLES LIKE"):
            name = sql.split("'")[1]
            return ["Variable_name", "Value"], [(name, _SETTINGS.get(name, ""))]
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
        if head.startswith("DESCRIBE"):
            exists = any(f"`{name}`" in sql or name in sql for name in self.created)
            return ["Field"], [("id",)] if exists else []
        if head.startswith("SELECT"):
            return self._select(sql)
        return [], []

    def _columns(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        if not any(f"'{name}'" in sql for name in self.created):
            return ["COLUMN_NAME", "COLUMN_TYPE"], []
        vector = f"vector({self.dimension})"
        if "COLUMN_COMMENT" in sql:  # tidb-vector's probe of the embedding column
            return ["COLUMN_TYPE", "COLUMN_COMMENT"], [(vector, "hnsw(distance=cosine)")]
        columns = [
            ("id", "varchar(512)"),
            ("embedding", vector),
            ("document", "mediumtext"),
            ("meta", "json"),
            ("create_time", "datetime"),
            ("update_time", "datetime"),
        ]
        return ["COLUMN_NAME", "COLUMN_TYPE"], columns

    def _select(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        names = _select_names(sql)
        limit = _LIMIT.search(sql)
        if "DISTANCE(" not in sql.upper() or not self.search_rows or limit is None:
            return names, []
        values = {"id": "doc", "document": "text", "meta": '{"group": 3}', "distance": 0.5}
        rows = []
        for i in range(int(limit.group(1))):
            row = tuple(_made_up(name, values, i) for name in names)
            rows.append(row)
        return names, rows


def _made_up(name: str, values: dict[str, Any], i: int) -> Any:
    for suffix, value in values.items():
        if name.endswith(suffix):
            return f"{value}-{i}" if suffix == "id" else value
    return None


def _select_names(sql: str) -> list[str]:
    """Result column names of the outermost SELECT (split at top-level commas)."""
    body = sql[len("SELECT ") :]
    depth, quoted, start, items = 0, False, 0, []
    for i, ch in enumerate(body):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and ch == ",":
            items.append(body[start:i])
            start = i + 1
        elif depth == 0 and ch.isspace() and _FROM.match(body, i):
            items.append(body[start:i])
            break
    names = []
    for item in items:
        item = item.strip()
        alias = re.search(r"\bAS\s+`?(\w+)`?$", item, re.IGNORECASE)
        names.append(alias.group(1) if alias else item.split(".")[-1].strip("`"))
    return names


class RecordingCursor(Cursor):
    """PyMySQL's cursor (its mogrify and executemany), with the wire replaced by a record."""

    def _query(self, q: Any) -> int:
        raw = q.encode(self.connection.encoding) if isinstance(q, str) else bytes(q)
        recorder: Recorder = self.connection.recorder
        sql = raw.decode(self.connection.encoding)
        recorder.record(_kind(sql), len(raw))
        names, rows = recorder.answer(sql)
        self._clear_result()
        self.rownumber = 0
        if names:
            self.description = tuple((n, 253, None, None, None, None, True) for n in names)
            self._rows = tuple(rows)
            self.rowcount = len(rows)
        else:
            self.rowcount = 1
        return self.rowcount


def _kind(sql: str) -> str:
    word = sql.lstrip().split(None, 1)[0].upper()
    return word if word in ("INSERT", "SELECT", "CREATE", "ALTER", "DELETE", "SET") else "other"


class StubConnection(pymysql.connections.Connection):
    """A PyMySQL connection that never connects; round trips go to the recorder."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(
            host="tidb.stub",
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

    def ping(self, reconnect: bool = False) -> None:
        self.recorder.record("PING", 1)

    def begin(self) -> None:
        self.recorder.record("BEGIN", len(b"BEGIN"))

    def commit(self) -> None:
        self.recorder.record("COMMIT", len(b"COMMIT"))

    def rollback(self) -> None:
        self.recorder.record("ROLLBACK", len(b"ROLLBACK"))

    def autocommit(self, value: bool) -> None:
        self.autocommit_mode = bool(value)

    def get_autocommit(self) -> bool:
        return bool(self.autocommit_mode)

    def close(self) -> None:
        self._stub_open = False

    def _force_close(self) -> None:
        self._stub_open = False
