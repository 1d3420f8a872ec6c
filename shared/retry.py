"""Retry timing: exponential backoff with full jitter, so replicas that failed together do not
retry together."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, base_s: float = 0.2, cap_s: float = 30.0, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): uniform in [0, min(cap, base * 2**attempt)]."""
    ceiling = min(cap_s, base_s * (2 ** max(attempt, 1)))
    return (rng or random).uniform(0, ceiling)
