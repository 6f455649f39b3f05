"""The fast path of a write's preparation: whole-column checks and one JSON encoder.

A large upsert used to check and serialise its rows one at a time (a few Python calls per
row, a new ``json.JSONEncoder`` per metadata dict), which cost as much as SQLite's own
work. Here each column is checked as a whole, mostly inside C: the types of every value at
once (``set(map(type, ...))``), all strings joined once for NUL and surrogates, all
integers by ``min``/``max``. Metadata is serialised by the same C encoder ``json.dumps``
uses, built once per call, so the text stored is the text ``json.dumps`` writes; rows
holding only strings, int64 integers, booleans, None and floats of magnitude 1e-4 to 1e16
(where both write the same text, checked once against a probe) go through orjson.

Every function here only *vouches*: it answers "all rows are fine" (or their text), or
None/False when it cannot, and never raises for bad input. The caller then runs the
row-by-row checks (``_rows``, ``_validate``, ``TableBase._prepare_ids``), which name the
first bad row exactly as before. So the fast path changes neither what is refused nor any
error message; it must only never vouch for a row the row-by-row checks would refuse,
which ``tests/test_batch_checks.py`` pins against them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any, cast

import numpy as np
import orjson

from tidb_jina.store._schema import INDEXED_VALUE_LENGTH
from tidb_jina.store._types import _json_default, dumps_metadata
from tidb_jina.store._validate import MAX_ROW_BYTES, needs_explaining

__all__ = ["ids_ok", "metadata_texts", "rows_to_write", "text_sizes", "texts_ok"]

_NONE = type(None)
# Values checked here as a column; anything else goes through the depth-aware scan.
_FLAT = frozenset({str, int, float, bool, _NONE})
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def _strings_ok(strings: list[str]) -> bool:
    """No NUL and no lone surrogate in any of ``strings`` (exact ``str``)."""
    joined = "".join(strings)
    if "\x00" in joined:
        return False
    if joined.isascii():  # O(1) in CPython: the string's kind is known
        return True
    try:
        joined.encode("utf-8")  # a lone surrogate cannot be encoded
    except UnicodeEncodeError:
        return False
    return True


def ids_ok(ids: list[Any], limit: int | None) -> bool:
    """True when every id is a non-empty ``str`` without NUL or surrogates, of at most
    ``limit`` characters (False: check them one by one to name the bad one)."""
    if not ids:
        return True
    if set(map(type, ids)) != {str}:
        return False
    lengths = list(map(len, ids))
    if min(lengths) == 0 or (limit is not None and max(lengths) > limit):
        return False
    return _strings_ok(ids)


def texts_ok(texts: list[Any]) -> bool:
    """True when every document is None or a ``str`` without lone surrogates."""
    kinds = set(map(type, texts))
    if not kinds <= {str, _NONE}:
        return False
    strings = texts if _NONE not in kinds else [t for t in texts if t is not None]
    if all(map(str.isascii, strings)):
        return True
    try:  # per document, not joined: documents may be large
        for text in strings:
            if not text.isascii():
                text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _keys_ok(keys: list[Any]) -> bool:
    """Top-level metadata keys: non-empty ``str``, no NUL, no lone surrogate. Every key's
    type is checked (a set of keys would keep one of two keys that compare equal)."""
    if not keys:
        return True
    if set(map(type, keys)) != {str}:
        return False
    distinct = set(keys)  # equal strings: the same characters, checked once
    return "" not in distinct and _strings_ok(list(distinct))


def _values_ok(values: list[Any], kinds: set[type]) -> bool:
    """The top-level values of every row (``kinds``: their types), as
    ``_validate.needs_explaining`` judges them."""
    if str in kinds and not _strings_ok([v for v in values if type(v) is str]):
        return False
    if int in kinds:
        ints = [v for v in values if type(v) is int]
        if min(ints) < _INT_MIN or max(ints) > _INT_MAX:
            return False
    if kinds <= _FLAT:
        return True
    # Containers, NumPy values, subclasses: the same scan as one row's, as a list's items
    # (depth 2, as a row's values), without building a path for each.
    return not needs_explaining([v for v in values if type(v) not in _FLAT])


def _plain_floats(values: list[Any], kinds: set[type]) -> bool:
    """True when every float is 0 or of magnitude in [1e-4, 1e16): there ``json`` and
    orjson write the same digits (both shortest round-trip) in the same notation; outside
    it ``json`` writes ``1e-05`` and orjson ``0.00001``. NaN and infinities are False."""
    if float not in kinds:
        return True
    size = np.abs(np.array([v for v in values if type(v) is float], dtype=np.float64))
    return bool(((size == 0) | ((size >= 1e-4) & (size < 1e16))).all())


def _indexed_ok(metas: list[dict[str, Any]], key: str) -> bool:
    values = [m[key] for m in metas if key in m]
    if not set(map(type, values)) <= _FLAT:
        return False
    strings = [v for v in values if type(v) is str]
    return not strings or max(map(len, strings)) <= INDEXED_VALUE_LENGTH


_PROBE = {
    "s": ['x\n"\\/\x00\x1f\x7f\u2028\u00e9\U0001f600', "", "[]"],
    "i": [0, -1, 2**53 + 1, 2**63 - 1, -(2**63)],
    "f": [0.0, -0.0, 1e-4, 0.1, 1 / 3, -123.456, 1e15 + 0.5, 9999999999999998.0],
    "o": [True, False, None, {}, [], {"k": ["v"]}],
}


def _encoder() -> Callable[[Any], str]:
    """``json.dumps`` as ``dumps_metadata`` calls it, with the C encoder made once.

    ``JSONEncoder.iterencode`` builds a new C encoder for every call; this builds it once
    per write, with the arguments ``iterencode`` passes (a fresh ``markers`` dict, so a
    failed call never leaves marks behind for another thread or write). If the C encoder
    is missing or takes other arguments, the plain ``dumps_metadata`` is used."""
    settings = json.JSONEncoder(
        ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_default
    )
    make = getattr(json.encoder, "c_make_encoder", None)
    plain: Callable[[Any], str] = settings.encode
    if make is None:
        return plain
    try:
        encode = make(
            {},
            settings.default,
            json.encoder.encode_basestring,  # ensure_ascii=False
            settings.indent,
            settings.key_separator,
            settings.item_separator,
            settings.sort_keys,
            settings.skipkeys,
            settings.allow_nan,
        )

        def fast(value: Any) -> str:
            return "".join(encode(value, 0))

        if fast(_PROBE) == dumps_metadata(_PROBE):
            return fast
    except Exception:  # another Python's encoder: use the plain one
        pass
    return plain


def _orjson_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


@functools.cache
def _orjson_agrees() -> bool:
    """orjson writes ``_PROBE`` (strings with every escape, int64 edges, floats in the
    plain range, nesting) as ``dumps_metadata`` does: checked once, in case an orjson
    release formats differently."""
    try:
        return _orjson_dumps(_PROBE) == dumps_metadata(_PROBE)
    except Exception:
        return False


def metadata_texts(metas: list[Any], indexed_key: str | None) -> list[str] | None:
    """The JSON text of every row's metadata (a None row is ``{}``), exactly as the
    row-by-row path writes it; None when any row needs that path (to be refused, or
    because it is not a plain ``dict``)."""
    kinds = set(map(type, metas))
    if not kinds <= {dict, _NONE}:
        return None
    rows: list[dict[str, Any]] = (
        metas if _NONE not in kinds else [{} if m is None else m for m in metas]
    )
    if not _keys_ok(list(chain.from_iterable(rows))):
        return None
    values = list(chain.from_iterable(map(dict.values, rows)))
    kinds = set(map(type, values))
    if not _values_ok(values, kinds):
        return None
    if indexed_key is not None and not _indexed_ok(rows, indexed_key):
        return None
    # Flat rows of plain values: orjson (several times faster) writes json.dumps's text.
    flat = kinds <= _FLAT and _plain_floats(values, kinds) and _orjson_agrees()
    encode = _orjson_dumps if flat else _encoder()
    try:
        return [encode(m) for m in rows]
    except Exception:  # NaN, a type JSON has no form for: the row-by-row path names it
        return None


def _utf8_lengths(texts: Sequence[str | None]) -> np.ndarray:
    """UTF-8 bytes of each text (None and "" count 0)."""
    column = cast("Sequence[str]", texts)
    if None in texts:
        column = ["" if t is None else t for t in texts]
    lengths = np.fromiter(map(len, column), dtype=np.int64, count=len(column))
    if not all(map(str.isascii, column)):
        wide = [i for i, t in enumerate(column) if not t.isascii()]
        lengths[wide] = [len(column[i].encode("utf-8")) for i in wide]
    return lengths


def text_sizes(
    ids: Sequence[str],
    documents: Sequence[str | None],
    metas: Sequence[str],
    stored_vector: int,
) -> np.ndarray | None:
    """UTF-8 bytes of each row's id, document and metadata JSON (``_validate.row_bytes``
    without its check); None when some row with ``stored_vector`` bytes of vector is over
    :data:`MAX_ROW_BYTES` (the caller names it with ``row_bytes``)."""
    sizes = _utf8_lengths(ids) + _utf8_lengths(documents) + _utf8_lengths(metas)
    if sizes.size and int(sizes.max()) + stored_vector > MAX_ROW_BYTES:
        return None
    return sizes


RowSize = Callable[[str, "str | None", str, int], int]


def rows_to_write(
    prepared: tuple[list[str], list[str | None], list[str]],
    keep: list[int],
    vectors: list[Any],
    stored_vector: int,
    row_size: RowSize,
) -> tuple[list[tuple[Any, ...]], np.ndarray]:
    """The ``(id, vector, document, meta)`` rows of ``keep`` (positions in ``prepared``,
    one per vector) and each row's bytes (its UTF-8 text plus ``len(vector)``), for
    ``batch_slices``. A row over the size limit is named by ``row_size`` (it raises)."""
    ids, documents, metas = prepared
    if len(keep) < len(ids):
        ids = [ids[i] for i in keep]
        documents = [documents[i] for i in keep]
        metas = [metas[i] for i in keep]
    text = text_sizes(ids, documents, metas, stored_vector)
    if text is None:
        for id, document, meta in zip(ids, documents, metas, strict=True):
            row_size(id, document, meta, stored_vector)
        raise AssertionError("text_sizes and row_bytes disagree")  # pragma: no cover
    sizes = text + np.fromiter(map(len, vectors), dtype=np.int64, count=len(vectors))
    return list(zip(ids, vectors, documents, metas, strict=True)), sizes
