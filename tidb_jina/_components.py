"""Vector components must be real numbers: a check shared by the store and the providers.

NumPy converts quietly: ``np.asarray([[True, 0.5]])`` is ``[[1.0, 0.5]]``,
``np.asarray(["0.5"], dtype=np.float32)`` is ``[0.5]`` and a complex array cast to float
drops its imaginary part. A vector holding a bool, a string or a complex number is a
bug upstream (a provider's JSON ``true`` or ``"0.5"``, a user's wrong column), so it is
refused before NumPy sees it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["first_non_number"]

# The types JSON decoders and NumPy hand us for real numbers (checked by identity first).
_PLAIN = frozenset({float, int, np.float32, np.float64, np.int64, np.int32})


def _is_real(kind: type) -> bool:
    if kind is bool or issubclass(kind, np.bool_):
        return False
    return issubclass(kind, (int, float, np.integer, np.floating))


def first_non_number(rows: Iterable[Any]) -> tuple[int, Any] | None:
    """``(row, value)`` of the first component that is not a real number, else None.

    ``rows`` is a sequence of vectors (lists or NumPy arrays). ``None`` components are
    not reported here (callers report them by position). Arrays are judged by dtype.
    """
    for i, row in enumerate(rows):
        if isinstance(row, np.ndarray):
            if row.dtype.kind in "fiu":
                continue
            values: Any = row.ravel().tolist() if row.dtype.kind == "O" else [row.flat[0]]
            if row.dtype.kind == "O":
                values = [v for v in values if not (v is None or _is_real(type(v)))]
                if not values:
                    continue
            return i, values[0] if values else None
        if isinstance(row, (str, bytes)) or not isinstance(row, Iterable):
            continue  # not a row of components: the caller's shape checks report it
        kinds = set(map(type, row))
        if kinds <= _PLAIN:
            continue
        for value in row:
            if value is not None and not _is_real(type(value)):
                return i, value
    return None
