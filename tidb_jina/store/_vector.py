"""Vectors in and out of the database: validation and the two wire formats.

TiDB takes a vector as JSON-array text of float32 values and returns the same form;
the embedded engine stores raw little-endian float32 BLOBs. Everything here works on
whole arrays: orjson writes float32 arrays with the shortest text that round-trips
exactly (and parses them back) in C, and NumPy validates a whole batch at once.
No per-element Python formatting happens on any path.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import orjson

from tidb_jina._components import first_non_number
from tidb_jina._errors import DimensionMismatchError, InvalidVectorError

MAX_DIMENSION = 16383  # TiDB's limit for VECTOR(D)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_LE_FLOAT32 = np.dtype("<f4")


def check_dimension(dimension: int) -> int:
    """Return ``dimension`` if TiDB can store it, else raise."""
    if isinstance(dimension, bool) or not isinstance(dimension, (int, np.integer)):
        raise DimensionMismatchError(
            f"dimension must be an integer, got {type(dimension).__name__}"
        )
    if not 1 <= int(dimension) <= MAX_DIMENSION:
        raise DimensionMismatchError(
            f"dimension {dimension} is out of range: TiDB stores vectors of 1 to "
            f"{MAX_DIMENSION} dimensions"
        )
    return int(dimension)


def as_matrix(vectors: Iterable[Any], dimension: int | None = None) -> np.ndarray:
    """Validate a batch of vectors and return them as a C-contiguous float32 matrix.

    Accepts lists of floats, NumPy arrays (any float or int dtype, including float64
    scalars inside lists) or a 2-D array. Raises ``InvalidVectorError`` for None,
    non-numbers, NaN, infinities and values beyond float32, and
    ``DimensionMismatchError`` for ragged rows or a length other than ``dimension``.
    """
    if isinstance(vectors, np.ndarray):
        rows: Any = vectors
        if vectors.dtype.kind in "bc":
            raise _not_real(0, vectors.flat[0] if vectors.size else None)
    else:
        rows = list(vectors)
        if not rows:
            return np.empty((0, dimension or 0), dtype=np.float32)
        bad = first_non_number(rows)
        if bad is not None:
            raise _not_real(*bad)
    try:
        raw = rows if isinstance(rows, np.ndarray) else np.asarray(rows)
        if raw.dtype == np.float32:
            matrix = raw  # validated in place: no float64 copy (the common case)
        elif raw.dtype.kind in "fiu":
            matrix = raw.astype(np.float64, copy=False)
        elif _has_non_numbers(raw):  # NumPy would quietly turn "2" into 2.0
            raise ValueError("not numbers")
        else:  # numbers and None: None becomes NaN, reported by position below
            matrix = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _explain_bad_rows(rows, dimension) from exc
    if matrix.ndim == 1 and matrix.size == 0:
        return np.empty((0, dimension or 0), dtype=np.float32)
    if matrix.ndim != 2:
        raise InvalidVectorError(
            f"expected a list of vectors (a 2-D array), got an array of shape {matrix.shape}"
        )
    _check_values(matrix, rows)
    if dimension is not None and matrix.shape[1] != dimension:
        raise DimensionMismatchError(
            f"vectors have {matrix.shape[1]} dimensions but the table stores VECTOR("
            f"{dimension}); embed with a model of {dimension} dimensions or use another table"
        )
    check_dimension(matrix.shape[1])
    return np.ascontiguousarray(matrix, dtype=np.float32)


def as_vector(vector: Any, dimension: int | None = None) -> np.ndarray:
    """Validate one vector (see :func:`as_matrix`) and return it as float32."""
    if isinstance(vector, (str, bytes)):
        raise InvalidVectorError(f"expected a vector of numbers, got {type(vector).__name__}")
    if isinstance(vector, np.ndarray):
        if vector.ndim != 1:
            raise InvalidVectorError(f"expected one vector (1-D), got shape {vector.shape}")
        if _plain_float32(vector, dimension):  # a query from an embedder: checked as is
            return vector
        return as_matrix(vector[None, :], dimension)[0]
    return as_matrix([vector], dimension)[0]


def _plain_float32(vector: np.ndarray, dimension: int | None) -> bool:
    """A contiguous, finite float32 vector of the right length (what ``as_matrix`` would
    return unchanged), told with two reductions and no copies."""
    if type(vector) is not np.ndarray:  # a subclass (masked, memmap) leaves as a plain copy
        return False
    if vector.dtype != np.float32 or not vector.flags.c_contiguous or not vector.size:
        return False
    if vector.shape[0] != (dimension or vector.shape[0]) or vector.shape[0] > MAX_DIMENSION:
        return False
    # A NaN or an infinity makes the sum of squares NaN or infinite, so a finite sum
    # proves every value finite in one pass; an infinite one may only have overflowed
    # (values above about 1e19): ``as_matrix`` then settles it value by value.
    with np.errstate(over="ignore", invalid="ignore"):
        return math.isfinite(float(vector.dot(vector)))


def _check_values(matrix: np.ndarray, rows: Any) -> None:
    if matrix.size == 0:
        return
    low, high = float(matrix.min()), float(matrix.max())  # NaN and infinities show here
    if math.isfinite(low) and math.isfinite(high) and max(-low, high) <= _FLOAT32_MAX:
        return  # the common case: two reductions, no temporary the size of the matrix
    finite = np.isfinite(matrix)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        if not isinstance(rows, np.ndarray) and rows[row][col] is None:
            raise InvalidVectorError(
                f"vector {row} has None at position {col}: every value must be a number"
            )
        raise InvalidVectorError(
            f"vector {row} has {matrix[row, col]!r} at position {col}: NaN and infinity "
            "cannot be stored (check the embedding model's output)"
        )
    if matrix.dtype == np.float32:
        return  # a finite float32 is in range by construction
    too_big = np.abs(matrix) > _FLOAT32_MAX
    if too_big.any():
        row, col = (int(i) for i in np.argwhere(too_big)[0])
        raise InvalidVectorError(
            f"vector {row} has {matrix[row, col]!r} at position {col}, outside the float32 "
            "range TiDB stores"
        )


def _not_real(row: int, value: Any) -> InvalidVectorError:
    return InvalidVectorError(
        f"vector {row} holds {value!r} ({type(value).__name__}), not a number: every component "
        "must be a real number (int or float; not bool, str or complex); check where it "
        'came from (a provider answering true or "0.5" is refused the same way)'
    )


def _has_non_numbers(raw: np.ndarray) -> bool:
    """True if an object/str array holds anything but numbers (None counts: reported as such)."""
    if raw.dtype.kind in "US":
        return True
    return any(
        isinstance(x, (str, bytes, bool, np.bool_, complex, np.complexfloating))
        or not (x is None or isinstance(x, (int, float, np.number)))
        for x in raw.flat
    )


def _explain_bad_rows(rows: Sequence[Any], dimension: int | None) -> Exception:
    lengths = set()
    for i, row in enumerate(rows):
        if row is None or isinstance(row, (str, bytes)):
            return InvalidVectorError(f"vector {i} is {type(row).__name__}, not a list of numbers")
        try:
            raw = np.asarray(row)
            if raw.dtype.kind not in "fiu" and _has_non_numbers(raw):
                raise ValueError("not numbers")
            arr = np.asarray(row, dtype=np.float64)
        except (TypeError, ValueError):
            return InvalidVectorError(
                f"vector {i} contains a value that is not a number (a string or an object); "
                "pass floats"
            )
        lengths.add(arr.shape)
    return DimensionMismatchError(
        f"vectors have different lengths {sorted(s[0] if s else 0 for s in lengths)}"
        + (f"; the table stores VECTOR({dimension})" if dimension else "")
    )


# --- TiDB: JSON-array text -------------------------------------------------------------


def encode_text(vector: np.ndarray) -> str:
    """float32 vector -> ``'[0.1,-2.5e-05,...]'`` (shortest exact float32 text)."""
    return orjson.dumps(
        vector.astype(np.float32, copy=False), option=orjson.OPT_SERIALIZE_NUMPY
    ).decode()


def encode_text_rows(matrix: np.ndarray) -> list[str]:
    """Encode each row of a validated float32 matrix as TiDB vector text."""
    dumps, opt = orjson.dumps, orjson.OPT_SERIALIZE_NUMPY
    return [dumps(row, option=opt).decode() for row in matrix]


def decode_text(text: str | bytes) -> np.ndarray:
    """TiDB vector text -> float32 array (exact: decimal -> float64 -> float32 is safe)."""
    try:
        values = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidVectorError(f"not a vector literal: {str(text)[:40]!r}") from exc
    return np.array(values, dtype=np.float32)


# --- embedded engine: little-endian float32 BLOBs --------------------------------------


def encode_blob(vector: np.ndarray) -> bytes:
    return vector.astype(_LE_FLOAT32, copy=False).tobytes()


def encode_blob_rows(matrix: np.ndarray) -> list[Any]:
    r"""Each row of ``matrix`` as its little-endian float32 bytes, for ``sqlite3`` to bind.

    The rows are views into one buffer (the matrix itself when it already is
    little-endian float32 in C order): 1-D ``uint8`` arrays, which ``sqlite3`` binds as a
    BLOB through the buffer protocol, exactly ``encode_blob``'s bytes. Nothing is copied
    before SQLite copies each row, and unlike ``memoryview`` objects, arrays are not tracked
    by Python's garbage collector, so a large upsert's rows never trigger a full
    collection. ``len()`` of a row is its size in bytes.

    If the process registered a ``sqlite3`` adapter for ``np.ndarray`` (a common recipe
    for pickling arrays), rows are ``bytes`` instead: the adapter would change what is
    stored.
    """
    le = np.ascontiguousarray(matrix, dtype=_LE_FLOAT32)
    if (np.ndarray, sqlite3.PrepareProtocol) in getattr(sqlite3, "adapters", {}):
        return [row.tobytes() for row in le]
    return list(le.view(np.uint8))


def decode_blob(blob: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(blob, dtype=_LE_FLOAT32).astype(np.float32)


def decode_blob_rows(blobs: Sequence[bytes], dimension: int) -> np.ndarray:
    """Many BLOBs -> one (n, dimension) float32 matrix, with a single copy."""
    if not blobs:
        return np.empty((0, dimension), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=_LE_FLOAT32).reshape(len(blobs), dimension)
