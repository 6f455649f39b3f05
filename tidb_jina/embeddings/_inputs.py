"""Inputs and outputs of embedding calls: text checks, batch plans, normalisation.

Pure functions, no I/O: the core store also uses :func:`validate_texts` so that a bad
text is refused before any request (or any write) is made.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from tidb_jina._errors import InvalidInputError


def validate_texts(texts: Iterable[str], what: str = "texts") -> list[str]:
    """A list copy of ``texts``; raises InvalidInputError naming the first bad index.

    Runs before any request so a bad element never costs a partial, billed batch.
    """
    if isinstance(texts, str):
        raise InvalidInputError(
            f"{what} must be a sequence of strings, not a single string; wrap it in a list"
        )
    items = list(texts)
    for i, text in enumerate(items):
        if text is None:
            raise InvalidInputError(f"{what}[{i}] is None; pass a non-empty string")
        if not isinstance(text, str):
            raise InvalidInputError(f"{what}[{i}] is a {type(text).__name__}, not a string")
        if not text.strip():
            raise InvalidInputError(
                f"{what}[{i}] is empty or whitespace only; providers reject empty inputs, "
                "so drop it before embedding"
            )
        if not text.isascii() and _lone_surrogate(text):
            # Else the JSON encoder's bare TypeError, after earlier batches were billed.
            raise InvalidInputError(
                f"{what}[{i}] is not valid Unicode: it holds a lone surrogate "
                f"({text[:40]!r}); decode the source with errors='replace' or fix the text"
            )
    return items


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def plan_batches(texts: Sequence[str], max_count: int, max_chars: int) -> list[tuple[int, int]]:
    """Contiguous ``(start, end)`` slices with at most ``max_count`` inputs and ``max_chars``
    characters each. A single text longer than ``max_chars`` gets a batch of its own."""
    batches: list[tuple[int, int]] = []
    start, chars = 0, 0
    for i, text in enumerate(texts):
        n = len(text)
        if i > start and (i - start >= max_count or chars + n > max_chars):
            batches.append((start, i))
            start, chars = i, 0
        chars += n
    if start < len(texts):
        batches.append((start, len(texts)))
    return batches


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(np.float32, copy=False)
