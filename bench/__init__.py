"""Benchmarks (not timed tests): ``python -m bench.ingest``."""

import statistics


def percentile(values: list[float], pct: float) -> float:
    """The ``pct``-th percentile (1–99) of ``values``, interpolated as ``statistics.quantiles`` does."""
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1] if len(values) > 1 else values[0]
