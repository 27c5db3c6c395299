"""The statistics of a sweep that repeats each configuration with several seeds: the mean and spread of a metric
over the seeds, and the effect of flipping one setting as the mean of paired differences with a Student's t
confidence interval (SciPy's ``ttest_rel``), read against the paper's published effect as a plain verdict."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
METHOD = (
    "Student's t interval of the mean paired difference, n - 1 degrees of freedom "
    "(scipy.stats.ttest_rel(...).confidence_interval(0.95))"
)


@dataclass(frozen=True)
class Spread:
    """A metric over the runs of one configuration: how many, their mean and sample standard deviation
    (n - 1 in the denominator; None for a single run)."""

    n: int
    mean: float
    std: float | None


def spread(values: list[float]) -> Spread | None:
    if not values:
        return None
    data = np.asarray(values, dtype=float)
    return Spread(len(data), float(data.mean()), float(data.std(ddof=1)) if len(data) > 1 else None)


@dataclass(frozen=True)
class PairedEffect:
    """The mean of ``on - off`` over pairs of runs that differ only in one setting, and its confidence interval
    (None when it cannot be given: fewer than two pairs)."""

    n: int
    mean: float
    low: float | None = None
    high: float | None = None

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None


def paired_effect(on: list[float], off: list[float], interval: bool = True) -> PairedEffect:
    """``on[i]`` and ``off[i]`` are one pair (same seed, everything else equal but the setting). With
    ``interval=False`` (one seed per configuration: the pairs measure no seed-to-seed spread) only the mean."""
    differences = np.asarray(on, dtype=float) - np.asarray(off, dtype=float)
    mean = float(differences.mean())
    if not interval or len(differences) < 2:
        return PairedEffect(len(differences), mean)
    if np.all(differences == differences[0]):  # no spread at all: t is undefined, the interval is the point
        return PairedEffect(len(differences), mean, mean, mean)
    with warnings.catch_warnings():  # SciPy warns of precision loss for nearly equal differences
        warnings.simplefilter("ignore", RuntimeWarning)
        bounds = stats.ttest_rel(on, off).confidence_interval(CONFIDENCE)
    return PairedEffect(len(differences), mean, float(bounds.low), float(bounds.high))


NO_EFFECT = "no effect detected"
CONSISTENT = "consistent with the paper"
SMALLER = "smaller than the paper's"
LARGER = "larger than the paper's"
OPPOSITE = "opposite to the paper's"
DETECTED = "effect detected"


def verdict(effect: PairedEffect, paper: float | None) -> str:
    """What the interval says, in words: "no effect detected" when it includes 0; else, beside the paper's
    positive effect, "consistent with the paper" when it includes the paper's value, "smaller than the paper's"
    or "larger than the paper's" when it lies wholly below or above it, "opposite to the paper's" when it lies
    below 0; "effect detected" where the paper published no number."""
    if not effect.has_interval:
        return "no interval"
    low, high = effect.low, effect.high
    if low <= 0 <= high:
        return NO_EFFECT
    if paper is None or math.isnan(paper):
        return DETECTED
    if high < 0 < paper:
        return OPPOSITE
    if high < paper:
        return SMALLER
    if low > paper:
        return LARGER
    return CONSISTENT
