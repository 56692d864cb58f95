"""Latency statistics and the before/after verdict (plain numbers in, plain data out)."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from dbopt.bench.stats import SampleComparison, compare_samples, percentile, summarize


def latencies(median_ms: float, n: int, seed: int) -> list[float]:
    """Right-skewed, like real query latencies."""
    return list(np.random.default_rng(seed).lognormal(np.log(median_ms), 0.15, n))


def test_percentiles_interpolate_linearly_between_ranks():
    one_to_hundred = list(range(1, 101))
    assert percentile(one_to_hundred, 95) == pytest.approx(95.05)
    assert percentile(one_to_hundred, 99) == pytest.approx(99.01)
    # [10, 20, 30, 40]: rank 0.95·3 = 2.85 → 30 + 0.85·10
    assert percentile([40, 10, 30, 20], 95) == pytest.approx(38.5)
    assert percentile([7.0], 99) == 7.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_summary_matches_numpy_and_statistics(seed):
    data = latencies(3.0, 257, seed)
    s = summarize(data)
    assert s.n == 257
    assert s.median_ms == pytest.approx(np.median(data))
    assert s.p95_ms == pytest.approx(np.percentile(data, 95))
    assert s.p99_ms == pytest.approx(np.percentile(data, 99))
    assert s.mean_ms == pytest.approx(statistics.fmean(data))
    assert s.stddev_ms == pytest.approx(statistics.stdev(data))
    assert (s.min_ms, s.max_ms) == (min(data), max(data))
    # the seed plan's "p99 ≈ mean + 3σ" is not what we report
    assert s.p99_ms != pytest.approx(s.mean_ms + 3 * s.stddev_ms)


def test_identical_samples_are_no_change():
    same = [2.5] * 30
    c = compare_samples(same, same)
    assert c.verdict == "no_change"
    assert c.p_value == 1.0
    assert c.median_ratio == 1.0 and c.ci_low == c.ci_high == 1.0


def test_clear_five_fold_speed_up_is_improved():
    c = compare_samples(latencies(10.0, 40, 1), latencies(2.0, 40, 2))
    assert c.verdict == "improved", c.reason
    assert c.p_value < 1e-6
    assert c.ci_low < 0.2 * 1.1 and c.ci_high < 0.9
    assert c.median_ratio == pytest.approx(0.2, rel=0.15)
    assert "faster" in c.reason


def test_slowdown_is_regressed():
    c = compare_samples(latencies(2.0, 40, 3), latencies(3.0, 40, 4))
    assert c.verdict == "regressed", c.reason
    assert c.ci_low > 1.1


def test_significant_but_small_effect_is_no_change():
    # 3% faster with many samples: Mann-Whitney alone would call this an improvement
    c = compare_samples(latencies(10.0, 2000, 5), latencies(9.7, 2000, 6))
    assert c.p_value < 0.01
    assert c.verdict == "no_change"
    assert "±10%" in c.reason


def test_too_few_samples_are_inconclusive():
    c = compare_samples([10.0, 11.0, 12.0, 10.5], [1.0, 1.1, 1.2, 1.0, 1.3])
    assert c.verdict == "inconclusive"
    assert c.p_value is None and c.ci_low is None
    assert "at least 5" in c.reason


def test_bootstrap_is_deterministic_per_seed():
    before, after = latencies(5.0, 50, 7), latencies(4.0, 50, 8)
    first = compare_samples(before, after)
    assert compare_samples(before, after).to_dict() == first.to_dict()
    other = compare_samples(before, after, seed=1)
    assert (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)
    assert other.method.endswith("seed 1")


def test_comparison_is_json_and_round_trips():
    c = compare_samples(latencies(10.0, 20, 1), latencies(2.0, 20, 2))
    data = json.loads(json.dumps(c.to_dict()))
    assert data["method"] == "Mann-Whitney U two-sided, bootstrap 95% CI of median ratio, 2000 resamples, seed 0"
    assert SampleComparison.from_dict(data) == c


@pytest.mark.parametrize(
    ("before", "after", "kwargs", "message"),
    [
        ([], [1.0] * 5, {}, "before samples: need a non-empty list"),
        ([1.0] * 5, [1.0, float("nan"), 1.0, 1.0, 1.0], {}, "after samples: durations must be finite"),
        ([1.0] * 5, [1.0, -2.0, 1.0, 1.0, 1.0], {}, "> 0 ms"),
        ([1.0] * 5, [1.0] * 5, {"min_effect": 10}, "min_effect must be within [0, 1)"),
        ([1.0] * 5, [1.0] * 5, {"alpha": 0}, "alpha must be within (0, 1)"),
    ],
)
def test_bad_input_names_the_problem(before, after, kwargs, message):
    with pytest.raises(ValueError) as err:
        compare_samples(before, after, **kwargs)
    assert message in str(err.value)
