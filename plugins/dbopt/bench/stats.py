"""Statistics of latency samples (milliseconds) and the before/after verdict drawn from them.

Percentiles use linear interpolation between closest ranks (Hyndman & Fan type 7, numpy's default
``method="linear"``): p95 of 1..100 is 95.05. They are computed from the samples, never guessed
from mean + k·σ (latency is skewed; that guess is wrong in both directions).

A change is judged by two tests that must agree (see ``compare_samples``):
  * Mann-Whitney U (two-sided): is one distribution shifted against the other at all?
  * a percentile-bootstrap confidence interval of median(after) / median(before): by how much,
    and is the whole interval beyond the smallest effect worth acting on (``min_effect``)?
Significance alone would call a 1% difference "improved" once there are enough samples; the
interval alone ignores how noisy the arms are. Both together give a verdict that is stable.

Neither test knows about drift: two measurements of the same configuration minutes apart differ
(page cache, buffer pool, a neighbour's load). ``aa_drift`` estimates it from two A arms in the same
statistic (median ratio), and ``compare_samples(drift=…)`` requires an effect to exceed it too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.stats import mannwhitneyu

from dbopt.targets.base import Data

# "drift": an A/A check (the same configuration measured twice) found a difference; never an effect
Verdict = Literal["improved", "regressed", "no_change", "inconclusive", "drift"]

MIN_SAMPLES = 5  # below this neither test means anything (U's smallest exact p at n=5+5 is 0.008)
DEFAULT_MIN_EFFECT = 0.10
DEFAULT_ALPHA = 0.01
DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
_BOOTSTRAP_CHUNK = 250  # resamples drawn at once: bounds memory at chunk × n floats per arm


@dataclass(frozen=True)
class Summary(Data):
    """Descriptive statistics of one sample set, in milliseconds (stddev is the sample stddev)."""

    n: int
    mean_ms: float
    median_ms: float
    p95_ms: float
    p99_ms: float
    stddev_ms: float
    min_ms: float
    max_ms: float


def _as_samples(samples: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(samples, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{what}: need a non-empty list of durations in ms, got {len(arr)} values")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{what}: durations must be finite and > 0 ms (got min {arr.min()!r})")
    return arr


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy "linear")."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    return float(np.percentile(_as_samples(samples, "percentile"), q, method="linear"))


def summarize(samples: Sequence[float]) -> Summary:
    arr = _as_samples(samples, "summarize")
    p50, p95, p99 = np.percentile(arr, [50, 95, 99], method="linear")
    return Summary(
        n=int(arr.size),
        mean_ms=float(arr.mean()),
        median_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        stddev_ms=float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        min_ms=float(arr.min()),
        max_ms=float(arr.max()),
    )


def method_description(confidence: float, resamples: int, seed: int) -> str:
    return (
        f"Mann-Whitney U two-sided, bootstrap {confidence * 100:g}% CI of median ratio, "
        f"{resamples} resamples, seed {seed}"
    )


@dataclass(frozen=True)
class SampleComparison(Data):
    """Before vs after for one query: both summaries, the evidence and the verdict it supports."""

    before: Summary
    after: Summary
    median_ratio: float  # median(after) / median(before): 0.2 = five times faster
    ci_low: float | None  # None when inconclusive (too few samples to resample)
    ci_high: float | None
    p_value: float | None
    verdict: Verdict
    reason: str
    method: str
    confidence: float
    min_effect: float
    alpha: float
    drift: float = 0.0  # A/A drift estimate (fraction); the effect had to exceed max(min_effect, drift)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleComparison:
        return super().from_dict(
            {**data, "before": Summary.from_dict(data["before"]), "after": Summary.from_dict(data["after"])}
        )


def bootstrap_median_ratio_ci(
    before: np.ndarray, after: np.ndarray, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile-bootstrap CI of median(after)/median(before); each arm resampled on its own."""
    rng = np.random.default_rng(seed)
    ratios = []
    for start in range(0, resamples, _BOOTSTRAP_CHUNK):
        size = min(_BOOTSTRAP_CHUNK, resamples - start)
        med_before = np.median(rng.choice(before, size=(size, before.size)), axis=1)
        med_after = np.median(rng.choice(after, size=(size, after.size)), axis=1)
        ratios.append(med_after / med_before)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(np.concatenate(ratios), [tail, 100 - tail], method="linear")
    return float(low), float(high)


def _validate(min_effect: float, alpha: float, confidence: float, resamples: int) -> None:
    if not 0 <= min_effect < 1:
        raise ValueError(f"min_effect must be within [0, 1) (a fraction, 0.10 = 10%), got {min_effect}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be within (0, 1), got {alpha}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    if resamples < 100:
        raise ValueError(f"resamples must be at least 100 for a usable interval, got {resamples}")


def compare_samples(
    before: Sequence[float],
    after: Sequence[float],
    *,
    min_effect: float = DEFAULT_MIN_EFFECT,
    alpha: float = DEFAULT_ALPHA,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    drift: float = 0.0,
) -> SampleComparison:
    """Judge after against before.

    "improved": CI upper bound < (1 - min_effect) / (1 + drift) and p < alpha; "regressed": CI lower
    bound > (1 + min_effect) × (1 + drift) and p < alpha — the effect must clear the A/A drift by
    ``min_effect`` (the drift is an estimate with its own error: a query that moved exactly as far as
    the drift is no evidence); "inconclusive": fewer than ``MIN_SAMPLES`` in either arm; otherwise
    "no_change". Deterministic for a given ``seed``.
    """
    _validate(min_effect, alpha, confidence, resamples)
    if not (drift >= 0 and math.isfinite(drift)):
        raise ValueError(f"drift must be a finite fraction ≥ 0 (0.15 = 15%), got {drift}")
    b, a = _as_samples(before, "before samples"), _as_samples(after, "after samples")
    sb, sa = summarize(b), summarize(a)
    ratio = sa.median_ms / sb.median_ms
    common = {
        "before": sb,
        "after": sa,
        "median_ratio": ratio,
        "method": method_description(confidence, resamples, seed),
        "confidence": confidence,
        "min_effect": min_effect,
        "alpha": alpha,
        "drift": drift,
    }
    if min(b.size, a.size) < MIN_SAMPLES:
        reason = f"only {b.size} before and {a.size} after samples; need at least {MIN_SAMPLES} each"
        return SampleComparison(
            ci_low=None, ci_high=None, p_value=None, verdict="inconclusive", reason=reason, **common
        )

    p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    p = 1.0 if math.isnan(p) else p  # all values tied in both arms: no evidence of any shift
    low, high = bootstrap_median_ratio_ci(b, a, confidence, resamples, seed)
    # drift is a ratio distance (×1.25 and ×0.8 are both 25%): "faster" beyond it is below 1/(1 + drift)
    faster, slower = (1 - min_effect) / (1 + drift), (1 + min_effect) * (1 + drift)
    bar = f"±{min_effect:.0%}" + (f" beyond the A/A drift: ×{faster:.3f}–×{slower:.3f}" if drift else "")
    verdict: Verdict
    if high < faster and p < alpha:
        verdict, why = "improved", f"faster, outside {bar}"
    elif low > slower and p < alpha:
        verdict, why = "regressed", f"slower, outside {bar}"
    else:
        verdict = "no_change"
        if p >= alpha:
            why = f"p ≥ {alpha:g}: the difference is within the noise"
        else:
            why = f"the CI does not lie entirely outside {bar}"
    reason = (
        f"median {sb.median_ms:.3f} → {sa.median_ms:.3f} ms (×{ratio:.3f}, "
        f"{confidence:.0%} CI {low:.3f}–{high:.3f}), p={p:.2g}, A/A drift {drift:.1%}: {why}"
    )
    return SampleComparison(ci_low=low, ci_high=high, p_value=p, verdict=verdict, reason=reason, **common)


def ratio_distance(ratio: float) -> float:
    """How far a median ratio is from 1, symmetric in direction: ×1.25 and ×0.8 are both 0.25."""
    return max(ratio, 1 / ratio) - 1


def aa_drift(first: Sequence[float], second: Sequence[float]) -> float:
    """The A/A drift between two measurements of the same configuration: the distance of their
    median ratio from 1 (0.0 when either is too small to say)."""
    a, b = _as_samples(first, "first A arm"), _as_samples(second, "second A arm")
    if min(a.size, b.size) < MIN_SAMPLES:
        return 0.0
    return ratio_distance(float(np.median(b)) / float(np.median(a)))


def halves_drift(samples: Sequence[float]) -> float:
    """``aa_drift`` of the first half of samples (in run order) against the second half."""
    half = len(samples) // 2
    return aa_drift(samples[:half], samples[half:]) if half else 0.0


@dataclass(frozen=True)
class WarmUp(Data):
    """How one query's warm-up ended: after ``runs`` runs, ``stable`` or stopped at the cap."""

    runs: int
    stable: bool
    last_median_ms: float | None


def is_stable(samples: Sequence[float], window: int, tolerance: float) -> bool:
    """The last ``window`` runs' median is within ``tolerance`` of the ``window`` runs before."""
    if len(samples) < 2 * window:
        return False
    last, previous = np.median(samples[-window:]), np.median(samples[-2 * window : -window])
    return bool(abs(last / previous - 1) <= tolerance)
