"""Spread of the evaluation's figures: a seeded percentile bootstrap of a mean, optionally by cluster.

Renders of one person (several emotions, views) are not independent samples, so the harness resamples
whole photos (`groups`) rather than single images: the interval then says how much the figure would move
with another set of people, which is what a reader of the results table wants to know.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap interval over `n` values (`clusters` resampled units)."""

    mean: float
    low: float
    high: float
    n: int
    clusters: int
    confidence: float = 0.95

    def to_json(self, digits: int = 4) -> dict:
        return {"mean": _round(self.mean, digits), "low": _round(self.low, digits),
                "high": _round(self.high, digits), "n": self.n, "clusters": self.clusters}  # fmt: skip

    def format(self, digits: int = 2, n: bool = True) -> str:
        """'0.62 [0.45, 0.78] n=24' (or '–' for no data)."""
        if self.n == 0:
            return "–"
        if self.low is None or math.isnan(self.low):  # None: read back from JSON, which has no NaN
            spread = "[no interval: one cluster]"
        else:
            spread = f"[{self.low:.{digits}f}, {self.high:.{digits}f}]"
        text = f"{self.mean:.{digits}f} {spread}"
        return f"{text} n={self.n}" if n else text


def _round(value: float, digits: int) -> float | None:
    return None if math.isnan(value) else round(float(value), digits)


def bootstrap_mean(values, groups=None, *, resamples: int = DEFAULT_RESAMPLES, confidence: float = 0.95,
                   seed: int = DEFAULT_SEED) -> Interval:
    """Mean of `values` (N,) with a percentile bootstrap interval.

    Without `groups`, the N values are resampled with replacement. With `groups` (N,) labels, whole
    groups are resampled and the mean of each resample is sum / count over the drawn groups (a cluster
    bootstrap; groups of unequal size weigh by their size, as in the plain mean). NaN values are
    dropped first. Deterministic for a given `seed`. An empty input gives NaNs and n = 0; a single cluster
    has no spread to resample, so its bounds are NaN.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    if groups is None:
        labels = np.arange(len(values))
    else:
        labels = np.asarray(groups).ravel()
        if labels.shape != values.shape:
            raise ValueError(f"groups has {labels.shape[0]} labels for {values.shape[0]} values")
    keep = ~np.isnan(values)
    values, labels = values[keep], labels[keep]
    if values.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, 0, confidence)
    _, index = np.unique(labels, return_inverse=True)
    if index.max() == 0:
        return Interval(float(values.mean()), math.nan, math.nan, int(values.size), 1, confidence)
    sums = np.bincount(index, weights=values)  # (G,) per-cluster sum and size
    counts = np.bincount(index).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(resamples, len(sums)))  # (R, G) cluster ids per resample
    means = sums[draws].sum(1) / counts[draws].sum(1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(values.mean()), float(low), float(high), int(values.size), int(len(sums)), confidence)
