"""Shared helpers for the benchmarks: timing, formatting and the result table.

Every table row compares our figure with a baseline measured in the same run; the ratio
is ``ours / baseline`` (lower is better: times, statements, bytes) and the goal is met
when the ratio is at most the row's limit.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple


class Row(NamedTuple):
    """One compared figure; ``limit`` is the largest ours/baseline ratio that meets the goal."""

    measure: str
    ours: float
    baseline_name: str
    baseline: float
    goal: str
    limit: float | None = None


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_per_call(
    fns: list[Callable[[Any], object]], args: list[Any], repeat: int = 3
) -> list[float]:
    """Median seconds per call of each function, calls interleaved (a, b, a, b, ...).

    On a shared machine the load drifts; interleaving gives every contestant the same
    conditions, so the ratios hold even when the absolute times move.
    """
    for fn in fns:  # warm-up
        fn(args[0])
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for arg in args:
            for i, fn in enumerate(fns):
                start = time.perf_counter()
                fn(arg)
                times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one call (no warm-up: for first-use and ingest figures)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def table(rows: list[Row], fmt: Callable[[float], str] | None = None) -> str:
    """Markdown table: measure | ours | baseline | baseline figure | ratio | goal | met."""
    fmt = fmt or fmt_seconds
    out = [
        "| measure | ours | baseline | baseline figure | ours / baseline | goal | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row.ours / row.baseline if row.baseline else None
        shown = "-" if ratio is None else f"{ratio:.2f}x"
        met = "-" if row.limit is None or ratio is None else verdict(ratio <= row.limit)
        out.append(
            f"| {row.measure} | {fmt(row.ours)} | {row.baseline_name} | {fmt(row.baseline)} "
            f"| {shown} | {row.goal} | {met} |"
        )
    return "\n".join(out)


def fmt_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_count(value: float) -> str:
    return f"{value:,.0f}"


def fmt_bytes(value: float) -> str:
    if value >= 2**20:
        return f"{value / 2**20:.1f} MiB"
    if value >= 2**10:
        return f"{value / 2**10:.1f} KiB"
    return f"{value:.0f} B"


def random_vectors(n: int, dim: int, seed: int = 0, chunk: int = 100_000):
    """``n`` x ``dim`` standard-normal float32 rows, made in chunks (no float64 copy)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        out[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
    return out
