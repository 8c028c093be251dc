from __future__ import annotations

import math
import time


def clock() -> float:
    """CLOCK_MONOTONIC in seconds. On Linux it is one clock for the whole machine, so stamps
    taken by the load generator and by the receiver (another process) can be subtracted; and,
    unlike time.time(), it never jumps when the wall clock is set."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(latencies_ms: list[float]) -> dict[str, float]:
    values = sorted(latencies_ms)
    return {
        "count": len(values),
        "p50": round(percentile(values, 50), 2),
        "p90": round(percentile(values, 90), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(values[-1], 2) if values else float("nan"),
        "mean": round(sum(values) / len(values), 2) if values else float("nan"),
    }
