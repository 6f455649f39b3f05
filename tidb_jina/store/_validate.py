"""Checks on rows about to be written that the driver or TiDB would only fail on later.

Everything here is pure and runs before the first statement of a write, so a bad row
never leaves earlier batches committed:

* **Lone surrogates** (``"\\ud800"``) anywhere: ids, documents, metadata keys and values
  at any depth. UTF-8 cannot encode them; the driver would raise ``UnicodeEncodeError``
  mid-ingest.
* **NUL in metadata** strings and nested keys. SQLite's JSON functions end text at NUL,
  so ``"acme\\x00evil"`` would compare equal to ``"acme"`` and widen filters. Top-level
  keys and ids already refuse it (``check_metadata_key``); documents may hold it.
* **Nesting** deeper than :data:`MAX_METADATA_DEPTH` (a clear error, not
  ``RecursionError`` from the JSON encoder; MySQL's JSON limit is 100).
* **Keys** that are not strings at any depth, including inside NumPy object arrays
  (``json.dumps`` would quietly write ``{1: "x"}`` as ``{"1": "x"}``).
* **Integers** outside the signed 64-bit range, at any depth. SQLite's JSON reads them
  as REAL (rounded), so ``2**63 + 1`` would compare equal to ``2.0**63`` and filters
  would widen; filter values are limited to the same range.
* **Row size** in UTF-8 bytes of id, document, metadata JSON and vector together,
  against TiDB's 6 MiB ``txn-entry-size-limit``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tidb_jina._errors import InvalidInputError, RecordTooLargeError

__all__ = [
    "MAX_METADATA_DEPTH",
    "MAX_ROW_BYTES",
    "check_metadata_values",
    "check_text",
    "needs_explaining",
    "row_bytes",
]

MAX_METADATA_DEPTH = 64
# TiDB's txn-entry-size-limit is 6 MiB per row; keep headroom for the row encoding.
MAX_ROW_BYTES = 6 * 1024 * 1024 - 64 * 1024


def _has_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_text(text: str, what: str) -> None:
    """Raise InvalidInputError if ``text`` (an id or document) holds a lone surrogate."""
    if _has_surrogate(text):
        raise InvalidInputError(
            f"{what} is not valid Unicode: it holds a lone surrogate ({text[:40]!r}); decode "
            "the source with errors='replace' or fix the text"
        )


def _check_string(value: str, where: str, *, key: bool) -> None:
    what = "key" if key else "value"
    if "\x00" in value:
        raise InvalidInputError(
            f"{where} has a {what} with a NUL character ({value[:40]!r}); metadata strings "
            "cannot hold NUL (SQLite's JSON ends text there, so filters would match the "
            "text before it): remove it or encode the value (e.g. base64)"
        )
    if _has_surrogate(value):
        raise InvalidInputError(
            f"{where} has a {what} that is not valid Unicode: it holds a lone surrogate "
            f"({value[:40]!r}); fix the text or decode the source with errors='replace'"
        )


_SCALARS = (int, float, bool, type(None))
# SQLite (and the filter language) hold integers as signed 64-bit.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def _bad_int(value: Any) -> bool:
    """An integer (Python or NumPy, not bool) outside the signed 64-bit range."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return not _INT_MIN <= int(value) <= _INT_MAX
    return False


def _bad_array(value: np.ndarray) -> bool:
    """A NumPy unsigned array holding a value beyond the signed 64-bit range."""
    return value.dtype.kind == "u" and value.size > 0 and int(value.max()) > _INT_MAX


def _bad_string(text: str) -> bool:
    return "\x00" in text or _has_surrogate(text)


def needs_explaining(meta: Mapping[str, Any] | list[Any]) -> bool:
    """Fast scan (no paths built): True when ``meta`` breaks a rule somewhere.

    ``meta`` is one row's metadata, or a list of values scanned as one row's values would
    be (depth 2 each: ``_batch_checks`` passes the values of many rows at once)."""
    stack: list[tuple[Any, int]] = [(meta, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, np.ndarray):
            if _bad_array(value):
                return True
            if value.dtype.kind not in "OU":
                continue
            value = value.tolist()
        if isinstance(value, Mapping):
            items: Any = value.items()
        elif isinstance(value, (list, tuple)):
            items = enumerate(value)
        else:
            if _bad_int(value):
                return True
            continue
        if depth > MAX_METADATA_DEPTH:
            return True
        keyed = isinstance(value, Mapping)
        for key, item in items:
            if keyed and (type(key) is not str or _bad_string(key)):
                return True
            kind = type(item)
            if kind is str or isinstance(item, str):  # NumPy's str_ too
                if _bad_string(item):
                    return True
            elif kind is int:
                if not _INT_MIN <= item <= _INT_MAX:
                    return True
            elif kind not in _SCALARS:
                stack.append((item, depth + 1))
    return False


def check_metadata_values(meta: Mapping[str, Any], i: int) -> None:
    """Raise InvalidInputError for a bad string, key or nesting anywhere in ``meta``.

    Iterative, so no depth of input makes it raise ``RecursionError``. The common case
    (nothing wrong) builds no path strings; only a failure is walked again to name it.
    """
    if not needs_explaining(meta):
        return
    stack: list[tuple[Any, str, int]] = [(meta, f"metadata {i}", 1)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            _check_string(value, where, key=False)
            continue
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "OUu":
                continue
            value = value.tolist()
        if isinstance(value, Mapping):
            items: Any = value.items()
        elif isinstance(value, (list, tuple)):
            items = enumerate(value)
        else:
            if _bad_int(value):
                raise InvalidInputError(
                    f"{where} holds the integer {int(value)}, outside the signed 64-bit "
                    "range that SQLite's JSON and the filters compare exactly; store it as "
                    "a string (or a float, if rounding is acceptable)"
                )
            continue
        if depth > MAX_METADATA_DEPTH:
            raise InvalidInputError(
                f"{where} nests more than {MAX_METADATA_DEPTH} levels deep; flatten it "
                "or store the deep part as a JSON string"
            )
        for key, item in items:
            if isinstance(value, Mapping):
                if not isinstance(key, str):
                    raise InvalidInputError(
                        f"{where} has the key {key!r} ({type(key).__name__}); JSON keys "
                        "must be strings: convert it with str() first"
                    )
                _check_string(key, where, key=True)
                stack.append((item, f"{where}[{key!r}]", depth + 1))
            else:
                stack.append((item, f"{where}[{key}]", depth + 1))


def row_bytes(id: str, document: str | None, meta: str, vector_bytes: int) -> int:
    """UTF-8 bytes of the row (id, document, metadata JSON) plus ``vector_bytes``.

    Raises RecordTooLargeError above :data:`MAX_ROW_BYTES` (TiDB's per-row limit).
    """
    size = len(id.encode("utf-8")) + len(meta.encode("utf-8"))
    if document:
        size += len(document.encode("utf-8"))
    if size + vector_bytes > MAX_ROW_BYTES:
        raise RecordTooLargeError(
            f"record {id[:40]!r} is {(size + vector_bytes) / 2**20:.1f} MiB in UTF-8 (id, "
            "document, metadata and vector); TiDB stores at most 6 MiB per row: split the "
            "document into smaller chunks or move large metadata elsewhere"
        )
    return size
