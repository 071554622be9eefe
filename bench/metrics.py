"""The summaries every benchmark reports, defined once (standard library only, so that
bench/host_load.py, which runs on a system Python without the project's venv, can import it too).

percentile() is src/eval.rs's `percentile` in Python: linear interpolation between the two nearest
ranks, which is also numpy's default and, at 0.5, `statistics.median`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float:
    """Percentile `q` (0..1) of `values` (0.0 when there are none)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    position = min(max(q, 0.0), 1.0) * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def median(values: Iterable[float]) -> float:
    return percentile(values, 0.5)


def median_spread(values: Iterable[float]) -> dict:
    """{"median", "min", "max"}: how the benchmarks report repeated runs."""
    ordered = sorted(values)
    return {"median": median(ordered), "min": ordered[0], "max": ordered[-1]}
