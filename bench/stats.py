"""Pure statistics for the benchmarks: medians over repeats, percentiles, ratios, goal checks.

Machines are shared and noisy, so every headline number is a median over repeats and every
comparison is a ratio of two measurements taken in the same run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def ratio(numerator: float, denominator: float) -> float:
    if not denominator or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return numerator / denominator


def latency_summary(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds of latency samples given in seconds."""
    return {
        "n": len(samples_s),
        "p50_ms": percentile(samples_s, 50) * 1000,
        "p95_ms": percentile(samples_s, 95) * 1000,
        "p99_ms": percentile(samples_s, 99) * 1000,
        "max_ms": (max(samples_s) * 1000) if samples_s else math.nan,
    }


def median_of_runs(runs: Sequence[dict], key: str) -> float:
    """Median of ``key`` over repeated runs (runs missing it are skipped)."""
    values = [run[key] for run in runs if key in run and run[key] is not None and not _isnan(run[key])]
    return median(values) if values else math.nan


def _isnan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def goal_met(value: float, goal: float, direction: str) -> bool | None:
    """direction '>=' or '<='; None when the value is missing."""
    if value is None or _isnan(value):
        return None
    return value >= goal if direction == ">=" else value <= goal


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.nan
