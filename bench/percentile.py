"""The one percentile every bench script reports (nearest rank on the sorted samples)."""

from __future__ import annotations


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
