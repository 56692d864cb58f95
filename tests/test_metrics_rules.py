"""The rule evaluator: verdicts on hand-made samples (no data, NaN, spikes, thresholds, requests, baselines)."""

from __future__ import annotations

import json
import math

import pytest

from dbopt.metrics.rules import Rule, check, check_sources, evaluate, judge, parse_rules
from dbopt.metrics.sources import Sample, Series
from tests.metrics_fixtures import StaticSource

NAN = math.nan


def series(values: list[float], requests: float | None = 100.0, scope: str = "canary", step: float = 1.0) -> Series:
    return Series("error_ratio", scope, tuple(Sample(1000 + i * step, v) for i, v in enumerate(values)), requests, "t")


def rule(**kw) -> Rule:
    base = {"metric": "error_ratio", "op": ">", "threshold": 0.05, "window_s": 60, "min_samples": 3}
    return Rule(**{**base, **kw})


def test_empty_result_is_inconclusive_not_pass():
    r = judge(rule(), series([]))
    assert r.verdict == "inconclusive"
    assert r.reason.startswith("no data")


def test_nan_samples_are_not_judged():
    r = judge(rule(), series([NAN, NAN, NAN, NAN]))
    assert r.verdict == "inconclusive"
    assert "NaN (0/0)" in r.reason and r.judged == 0 and r.samples == 4
    # NaN among real values neither passes nor breaks the count of the others
    r = judge(rule(), series([0.0, NAN, 0.01, 0.02]))
    assert r.verdict == "pass" and r.judged == 3


def test_spike_shorter_than_sustained_for_does_not_fail():
    # samples 1 s apart; the spike lasts 2 samples = 1 s < sustained_for 2 s, then recovers
    r = judge(rule(sustained_for_s=2), series([0.0, 0.0, 0.5, 0.5, 0.0, 0.0]))
    assert r.verdict == "pass"
    assert r.longest_breach_s == 1.0 and "is over" in r.reason


def test_breach_lasting_sustained_for_fails():
    r = judge(rule(sustained_for_s=2), series([0.0, 0.5, 0.5, 0.5, 0.0]))
    assert r.verdict == "fail"
    assert "(2s over 3 samples, >= sustained_for 2s)" in r.reason


def test_a_failing_breach_is_shown_whole_with_real_times():
    # sustained_for 0 is met by the first breaching sample; the reason still gives the whole breach (15 s),
    # as times a reader can place, not the moment it first counted ("from t=X to t=X (0s)")
    r = judge(rule(sustained_for_s=0), series([0.0, 0.5, 0.5, 0.5, 0.5], step=5.0))
    assert r.verdict == "fail" and (r.breach_from, r.breach_to) == (1005.0, 1020.0) and r.longest_breach_s == 15
    assert "from 1970-01-01 00:16:45 UTC to 1970-01-01 00:17:00 UTC (15s over 4 samples" in r.reason
    assert "t=" not in r.reason


def test_unjudged_sample_breaks_a_run():
    # 0.5, NaN, 0.5: no two seconds of evidence in a row
    r = judge(rule(sustained_for_s=2, min_samples=2), series([0.0, 0.5, NAN, 0.5, 0.0]))
    assert r.verdict == "pass"


def test_breach_still_under_way_is_inconclusive():
    r = judge(rule(sustained_for_s=3), series([0.0, 0.0, 0.0, 0.5, 0.5]))
    assert r.verdict == "inconclusive"
    assert "breaching at the latest sample" in r.reason


def test_sustained_for_zero_fails_on_one_sample():
    assert judge(rule(sustained_for_s=0), series([0.0, 0.0, 0.5, 0.0])).verdict == "fail"


@pytest.mark.parametrize(
    ("op", "verdict"),
    [(">", "pass"), (">=", "fail"), ("<", "pass"), ("<=", "fail")],
)
def test_exactly_at_threshold(op: str, verdict: str):
    """Strict operators do not breach at equality; <= and >= do. No epsilon."""
    r = judge(rule(op=op, threshold=0.25), series([0.25, 0.25, 0.25]))
    assert r.verdict == verdict
    assert r.value == 0.25 and r.limit == 0.25


def test_too_few_requests_is_inconclusive_even_when_breaching():
    r = judge(rule(min_requests=50), series([1.0, 1.0, 1.0], requests=3))
    assert r.verdict == "inconclusive"
    assert "too few requests: canary served 3 requests" in r.reason


def test_unknown_request_count_cannot_satisfy_min_requests():
    r = judge(rule(min_requests=1), series([0.0, 0.0, 0.0], requests=None))
    assert r.verdict == "inconclusive" and "unknown number" in r.reason


def test_too_few_samples_is_inconclusive():
    r = judge(rule(min_samples=5), series([0.0, 0.0]))
    assert r.verdict == "inconclusive" and "2 judged < min_samples 5" in r.reason


def latency_rule(**kw) -> Rule:
    base = {"metric": "latency_p95_ms", "op": ">", "threshold": 1.2, "relative_to": "baseline", "min_samples": 3}
    return Rule(**{**base, **kw})


def test_relative_to_baseline():
    base = series([100.0, 100.0, 100.0], scope="baseline")
    slow = judge(latency_rule(), series([130.0, 130.0, 130.0]), base)
    assert slow.verdict == "fail" and slow.limit == pytest.approx(120.0)
    assert judge(latency_rule(), series([110.0, 110.0, 110.0]), base).verdict == "pass"
    # exactly 1.2 × baseline with ">" is not a breach
    assert judge(latency_rule(), series([120.0, 120.0, 120.0]), base).verdict == "pass"


def test_relative_needs_baseline_samples_and_requests():
    canary = series([130.0, 130.0, 130.0])
    gaps = judge(latency_rule(), canary, series([100.0, NAN], scope="baseline"))
    assert gaps.verdict == "inconclusive"
    assert "baseline NaN (0/0)" in gaps.reason and "no baseline sample" in gaps.reason
    quiet = judge(latency_rule(min_requests=20), canary, series([100.0] * 3, requests=4, scope="baseline"))
    assert quiet.verdict == "inconclusive" and "baseline served 4" in quiet.reason


def test_evidence_is_strict_json():
    r = judge(rule(), series([NAN, 0.0, math.inf, 0.0]))
    text = json.dumps(r.to_dict(), allow_nan=False)
    assert '"NaN (0/0)"' in text and '"inf"' in text


def test_evaluate_queries_canary_and_baseline_at_one_end_time():
    src = StaticSource(
        {
            ("latency_p95_ms", "canary"): ([(1.0, 300.0), (2.0, 300.0), (3.0, 300.0)], 90),
            ("latency_p95_ms", "baseline"): ([(1.0, 100.0), (2.0, 100.0), (3.0, 100.0)], 90),
        }
    )
    result = check([latency_rule(min_requests=10)], {"metrics": src}, now=3.0)
    assert result.verdict == "fail"
    assert [c[1] for c in src.calls] == ["canary", "baseline"] and {c[3] for c in src.calls} == {3.0}


def test_source_error_is_inconclusive_and_check_reports_error():
    r = evaluate(rule(), {"metrics": StaticSource({("error_ratio", "canary"): ([], 0)}, fail=True)})
    assert r.verdict == "inconclusive" and r.error and "backend down" in r.reason
    healthy = StaticSource({("error_ratio", "canary"): ([(1.0, 0.0), (2.0, 0.0), (3.0, 0.0)], 100)})
    broken = StaticSource({("error_ratio", "canary"): ([], 0)}, fail=True)
    rules = [rule(name="a"), rule(name="b", source="other")]
    assert check(rules, {"metrics": healthy, "other": broken}).verdict == "error"


def test_check_inconclusive_never_counts_as_pass():
    src = StaticSource(
        {
            ("error_ratio", "canary"): ([(1.0, 0.0), (2.0, 0.0), (3.0, 0.0)], 100),
            ("latency_p95_ms", "canary"): ([], 0),
        }
    )
    rules = [rule(), Rule(metric="latency_p95_ms", op=">", threshold=500)]
    assert check(rules, {"metrics": src}).verdict == "inconclusive"
    failing = [rule(), rule(name="tight", op=">=", threshold=0.0)]
    assert check(failing, {"metrics": src}).verdict == "fail"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"metric": "error_ratio", "op": "=>", "threshold": 1}, "op '=>' must be one of <, <=, >, >="),
        (
            {"metric": "error_ratio", "op": ">", "threshold": 1, "window_s": 10, "sustained_for_s": 20},
            "sustained_for_s",
        ),
        ({"metric": "error_ratio", "op": ">", "threshold": "high"}, "threshold 'high' must be a finite number"),
        ({"metric": "error_ratio", "op": ">", "threshold": 1, "scope": "prod"}, "scope 'prod'"),
        (
            {"metric": "cache_hit_ratio", "op": "<", "threshold": 0.9, "scope": "database", "min_requests": 5},
            "min_requests",
        ),
        ({"metric": "error_ratio", "op": ">", "threshold": 1, "treshold": 2}, "unknown field(s) ['treshold']"),
        ({"metric": "error_ratio", "threshold": 1}, "missing required field(s) ['op']"),
        ({"metric": "p95", "op": ">", "threshold": 1, "relative_to": "canary"}, "relative_to 'canary'"),
    ],
)
def test_bad_rules_are_rejected_with_the_field_named(data: dict, message: str):
    with pytest.raises(ValueError, match="rules\\[1\\]") as err:
        parse_rules([{"metric": "error_ratio", "op": ">", "threshold": 0.1}, data])
    assert message in str(err.value)


def test_rule_set_checks():
    with pytest.raises(ValueError, match="at least one rule"):
        parse_rules([])
    with pytest.raises(ValueError, match="duplicate rule name"):
        parse_rules([rule(), rule(threshold=0.1)])
    with pytest.raises(ValueError, match="needs source 'database'"):
        check_sources([Rule(metric="cache_hit_ratio", op="<", threshold=0.9, scope="database")], {"metrics": None})
    src = StaticSource({("error_ratio", "canary"): ([], 0)})
    with pytest.raises(ValueError, match="has no metric 'pool_usage'"):
        check_sources([Rule(metric="pool_usage", op=">", threshold=0.9)], {"metrics": src})
