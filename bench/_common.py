"""Shared helpers for the benchmarks: timing and the result table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def table(rows: list[tuple[str, float, str, float, str]]) -> str:
    """Markdown table: measure | ours | baseline name | baseline | ratio | goal."""
    out = [
        "| measure | ours | baseline | baseline time | ours / baseline | goal |",
        "|---|---|---|---|---|---|",
    ]
    for measure, ours, base_name, base, goal in rows:
        ratio = f"{ours / base:.2f}x"
        out.append(f"| {measure} | {_fmt(ours)} | {base_name} | {_fmt(base)} | {ratio} | {goal} |")
    return "\n".join(out)


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"
