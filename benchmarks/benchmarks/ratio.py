"""Side-by-side timing: the median rate of one operation over a reference's,
interleaved so both see the same machine load."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds_pair(
    candidate: Callable[[], object],
    reference: Callable[[], object],
    repeats: int = 21,
    warmup: int = 3,
) -> tuple[float, float]:
    for _ in range(warmup):
        candidate()
        reference()
    ours, theirs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        candidate()
        t1 = time.perf_counter()
        reference()
        t2 = time.perf_counter()
        ours.append(t1 - t0)
        theirs.append(t2 - t1)
    return statistics.median(ours), statistics.median(theirs)


def median_ratio(
    candidate: Callable[[], object], reference: Callable[[], object], repeats: int = 21
) -> float:
    """Rate of `candidate` as a multiple of `reference`'s (higher is faster)."""
    ours, theirs = median_seconds_pair(candidate, reference, repeats)
    return theirs / ours
