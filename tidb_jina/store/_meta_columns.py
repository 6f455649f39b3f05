"""Filter columns for every metadata key, built from the texts the vector load read.

The first filter on a key used to read that key for every row with ``json_extract``: one
more pass over the table, whose pages are mostly the vectors' (0.4 s at 100k x 768, 3.7 s
at 1M). The streamed load (``_stream_load``) already reads those pages, so it keeps each
row's metadata text (up to ``META_TEXT_BYTES`` in all), and this module turns them into
the :class:`~tidb_jina.store._filter_numpy.KeyColumn` of every key at once, typed arrays
included, within the column cache's byte bound. A first filter then finds its column ready.

The columns must be exactly what SQLite's ``json_type`` / ``json_extract`` with the path
``$."key"`` give (``_filter_numpy``'s semantics), so the fast parse (orjson) is used only
where it provably agrees with SQLite, and SQLite itself answers for the other rows:

* a text with a backslash (an escaped label is not found by a path; SQLite cuts a string
  at an escaped NUL; surrogates) or that orjson refuses, and a row whose labels are not all
  distinct (SQLite's path takes the first of two equal labels, orjson the last), are read
  by SQLite's own functions, from the kept texts (not from the table);
* numbers orjson parsed as floats (SQLite's decimal parser may round differently) and
  integers out of SQLite's 64-bit range leave that key to the lazy SQL pass, as before;
* a key no row holds is known to be missing everywhere: no SQL pass at all.

Anything unexpected (a malformed text, a non-text value) keeps nothing: every key is then
read lazily by SQL, as before this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np
import orjson
import sqlalchemy as sa

from tidb_jina.store._filter_numpy import (
    ARRAY,
    FALSE,
    MISSING,
    NULL,
    NUMBER,
    OBJECT,
    STRING,
    TRUE,
    KeyColumn,
    kind_of,
    path_safe,
)
from tidb_jina.store._filter_typed import Typed, prepare

# Metadata text kept from one load, in characters (LlamaIndex rows carry a serialized
# node: such tables keep nothing and filter their keys lazily, as before).
META_TEXT_BYTES = 64 * 2**20
MAX_KEYS = 256  # more distinct keys than this: build none (filters read them lazily)
# A key whose strings are this long on average (text bodies, serialized nodes) is not
# built ahead: nobody filters on it by equality, and it would crowd the others out.
LONG_STRINGS = 256
_BOOL, _FLOAT = 100, 101  # transient codes: made TRUE/FALSE, or the key left lazy
_MISS = object()
_CODES = {
    type(_MISS): MISSING,
    type(None): NULL,
    bool: _BOOL,
    int: NUMBER,
    float: _FLOAT,
    str: STRING,
    list: ARRAY,
    dict: OBJECT,
}
_INT64 = (-(2**63), 2**63 - 1)
_SPACED = re.compile(r'"[ \t\n\r]')  # a quote before JSON white space


class Known(NamedTuple):
    """What the load saw: the snapshot's first ``size`` rows hold no path-safe key
    outside ``keys`` (a filter on another key matches them as missing)."""

    size: int
    keys: frozenset[str]


def build(
    conn: sa.Connection,
    texts: list[Any],
    budget: int,
    size_of: Callable[[KeyColumn], int],
) -> tuple[dict[str, KeyColumn], Known] | None:
    """Columns of the keys (up to ``budget`` bytes as ``size_of`` counts them) and what
    the rows hold, from each row's metadata text (None: NULL); None if unsure."""
    n = len(texts)
    if texts.count(None) == n:  # no metadata at all: every key is missing
        return {}, Known(n, frozenset())
    if bytes in set(map(type, texts)):  # SQLite's JSON functions refuse BLOBs
        return None
    # A number stored in the JSON column (numeric affinity) is a JSON scalar: no keys
    safe = [t if type(t) is str else "" for t in texts]
    parsed, suspect = _parse(safe)
    dicts = [d if type(d) is dict else {} for d in parsed]
    suspect += _duplicated_labels(safe, parsed, dicts)
    for i in suspect:
        dicts[i] = {}
    keys = {key for key in set().union(*dicts) if path_safe(key)}
    exact: dict[str, tuple[list[Any], list[Any]]] = {}
    if suspect:
        found = _sqlite_keys(conn, [safe[i] for i in suspect])
        if found is None:
            return None
        keys |= {key for key in found if path_safe(key)}
    if len(keys) > MAX_KEYS:
        return None
    if suspect:
        answered = _sqlite_values(conn, [safe[i] for i in suspect], sorted(keys))
        if answered is None:
            return None
        exact = answered
    columns: dict[str, KeyColumn] = {}
    used = 0
    for key in sorted(keys):
        col = _column(key, dicts, n, suspect, exact.get(key))
        if col is None:  # floats or huge integers: the lazy SQL pass reads this key
            continue
        used += size_of(col)
        if used > budget:
            break
        columns[key] = col
    return columns, Known(n, frozenset(keys))


def _parse(texts: list[str]) -> tuple[list[Any], list[int]]:
    """Each text parsed by orjson (None for ""), and the rows SQLite must read instead."""
    loads = orjson.loads
    try:
        parsed = [loads(t) if t and "\\" not in t else None for t in texts]
    except orjson.JSONDecodeError:
        parsed = []
        for t in texts:
            try:
                parsed.append(loads(t) if t and "\\" not in t else None)
            except orjson.JSONDecodeError:
                parsed.append(_MISS)
    suspect = [i for i, t in enumerate(texts) if "\\" in t or parsed[i] is _MISS]
    return parsed, suspect


def _duplicated_labels(
    texts: list[str], parsed: list[Any], dicts: list[dict[str, Any]]
) -> list[int]:
    """Rows whose text may hold one label twice (SQLite's path takes the first, orjson
    the last). Without a backslash every quote in a text delimits a string, and a string
    followed by ``:`` is a label (a value is followed by ``,`` ``}`` or ``]``). When no
    quote is followed by white space, each label's closing quote is followed by the colon
    itself, so ``text.count('":')`` is the number of labels at any depth; fewer distinct
    parsed labels mean a duplicate. Texts with a quote before white space are unsure."""
    n = len(texts)
    spaced: set[int] = set()
    if _SPACED.search("\x01".join(texts)) is not None:  # rare: ours write none
        spaced = {i for i, t in enumerate(texts) if _SPACED.search(t) is not None}
    raw = np.fromiter(map(str.count, texts, repeat('":')), dtype=np.int64, count=n)
    top = np.fromiter(map(len, dicts), dtype=np.int64, count=n)
    out = []
    for i in sorted(spaced | set(np.flatnonzero(raw != top).tolist())):
        if "\\" in texts[i] or parsed[i] is _MISS or parsed[i] is None:
            continue  # read by SQLite already, or no JSON at all
        if i in spaced or _labels(parsed[i]) != raw[i]:
            out.append(i)
    return out


def _labels(value: Any) -> int:
    """Labels of every object inside ``value``, at any depth."""
    if type(value) is dict:
        return len(value) + sum(_labels(v) for v in value.values())
    if type(value) is list:
        return sum(_labels(v) for v in value)
    return 0


def _sqlite_keys(conn: sa.Connection, texts: list[str]) -> set[str] | None:
    """Top-level keys of these texts' objects, as SQLite's json_each decodes them."""
    sql = (
        "SELECT DISTINCT j.key FROM json_each(?) AS r, json_each(r.value) AS j "
        "WHERE json_type(r.value) = 'object'"
    )
    try:
        rows = conn.exec_driver_sql(sql, (orjson.dumps(texts).decode(),)).all()
    except sa.exc.DBAPIError:  # a malformed text: the SQL path reports it, as before
        return None
    return {row[0] for row in rows}


def _sqlite_values(
    conn: sa.Connection, texts: list[str], keys: list[str]
) -> dict[str, tuple[list[Any], list[Any]]] | None:
    """Per key, SQLite's json_type and json_extract of ``$."key"`` for each text."""
    cols = ", ".join(
        f"json_type(r.value, ?{i + 2}), json_extract(r.value, ?{i + 2})" for i in range(len(keys))
    )
    sql = f"SELECT {cols or 'NULL'} FROM json_each(?1) AS r ORDER BY r.key"  # noqa: S608
    args = (orjson.dumps(texts).decode(), *(f'$."{key}"' for key in keys))
    try:
        rows = conn.exec_driver_sql(sql, args).all()
    except sa.exc.DBAPIError:  # a malformed text: the SQL path reports it, as before
        return None
    return {
        key: ([r[2 * i] for r in rows], [r[2 * i + 1] for r in rows]) for i, key in enumerate(keys)
    }


def _column(
    key: str,
    dicts: list[dict[str, Any]],
    n: int,
    suspect: list[int],
    exact: tuple[list[Any], list[Any]] | None,
) -> KeyColumn | None:
    """One key's column: orjson's values, SQLite's for the ``suspect`` rows."""
    got = map(dict.get, dicts, repeat(key), repeat(_MISS))
    values = np.fromiter(got, dtype=object, count=n)
    kind = np.fromiter(map(_CODES.__getitem__, map(type, values)), dtype=np.int8, count=n)
    if (kind == _FLOAT).any():
        return None
    numbers = np.flatnonzero(kind == NUMBER)
    if numbers.size:
        picked = values[numbers].tolist()
        if min(picked) < _INT64[0] or max(picked) > _INT64[1]:
            return None
    flags = np.flatnonzero(kind == _BOOL)
    if flags.size:
        kind[flags] = np.where(values[flags].astype(bool), TRUE, FALSE)
    arrays = kind == ARRAY
    empty = (kind == MISSING) | (kind == NULL)
    empty[arrays] = np.fromiter(map(len, values[arrays]), dtype=np.int64) == 0
    strings = kind == STRING
    if strings.any():
        lengths = np.fromiter(map(len, values[strings]), dtype=np.int64)
        if lengths.mean() >= LONG_STRINGS:
            return None
        empty[strings] = lengths == 0
    if suspect and exact is not None:
        rows = np.asarray(suspect, dtype=np.intp)
        types, raw = exact
        kinds = np.fromiter(map(kind_of, types), dtype=np.int8, count=len(types))
        kind[rows] = kinds
        vals = np.fromiter(raw, dtype=object, count=len(raw))
        values[rows] = vals
        emp = (kinds == MISSING) | (kinds == NULL)
        emp |= ((kinds == STRING) & (vals == "")) | ((kinds == ARRAY) & (vals == "[]"))
        empty[rows] = emp
    values[(kind != NUMBER) & (kind != STRING)] = None
    col = KeyColumn.__new__(KeyColumn)
    col.kind, col.values, col.empty = kind, values, empty
    col.typed = Typed()
    strings = kind == STRING
    if strings.any() and not _few_distinct(values[strings]):
        strings[:] = False  # many distinct strings: dictionary-encoded when first compared
    prepare(col.typed, kind == NUMBER, strings, values)
    return col


def _few_distinct(strings: np.ndarray) -> bool:
    """Whether sorting the distinct strings (``_filter_typed``'s encoding) is cheap: it
    compares Python strings, about a microsecond per row when each row's is its own."""
    return len(set(strings.tolist())) <= max(1024, strings.size // 16)
