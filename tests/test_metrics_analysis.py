"""The analysis state machine: failure / inconclusive / error limits, promotion, deadline, warm-up, replay."""

from __future__ import annotations

import json

import pytest

from dbopt.metrics.analysis import AnalysisPlan, AnalysisState, advance, outcome, replay, start, step
from dbopt.metrics.rules import CheckResult, Rule, RuleResult
from tests.metrics_fixtures import StaticSource

RULE = {"metric": "error_ratio", "op": ">", "threshold": 0.05, "window_s": 10}


def plan(**kw) -> AnalysisPlan:
    return AnalysisPlan(rules=(Rule(**RULE),), **{"interval_s": 10, "deadline_s": 600, **kw})


def check(verdict: str, t: float = 0.0) -> CheckResult:
    rule_verdict = "inconclusive" if verdict == "error" else verdict
    result = RuleResult("error_ratio[canary]", "d", rule_verdict, "r", error="down" if verdict == "error" else None)
    return CheckResult(t, verdict, (result,))  # type: ignore[arg-type]


def run(p: AnalysisPlan, verdicts: list[str], interval: float = 10.0) -> list[AnalysisState]:
    state, states = start(0.0), []
    for i, v in enumerate(verdicts, start=1):
        state = step(p, state, check(v, i * interval), i * interval)
        states.append(state)
    return states


def test_failure_limit_counts_failed_checks():
    states = run(plan(failure_limit=1), ["fail", "pass", "fail"])
    assert [s.decision for s in states] == ["continue", "continue", "rollback"]
    assert states[-1].reason == "2 failed checks > failure_limit 1"
    assert run(plan(failure_limit=0), ["fail"])[-1].decision == "rollback"


def test_promote_needs_passes_in_a_row():
    states = run(plan(required_passes=3), ["pass", "pass", "inconclusive", "pass", "pass", "pass"])
    assert [s.decision for s in states] == ["continue"] * 5 + ["promote"]
    assert states[2].passes_in_row == 0  # inconclusive never counts as pass, and breaks the streak


def test_inconclusive_limit_ends_in_the_safe_state():
    states = run(plan(inconclusive_limit=2), ["inconclusive", "pass", "inconclusive", "inconclusive"])
    assert states[-1].decision == "rollback"
    assert "3 inconclusive checks > inconclusive_limit 2" in states[-1].reason
    assert run(plan(inconclusive_limit=0, safe_state="promote"), ["inconclusive"])[-1].decision == "promote"


def test_deadline_without_enough_evidence_takes_the_safe_state():
    p = plan(deadline_s=45, inconclusive_limit=100, required_passes=3)
    states = run(p, ["inconclusive", "pass", "pass", "inconclusive", "pass"])  # checks at 10..50 s
    assert [s.decision for s in states] == ["continue"] * 4 + ["rollback"]
    assert states[-1].reason.startswith("deadline 45s reached after 5 checks with 1/3 passes in a row")
    assert states[-1].decided_at == 50.0


def test_a_check_at_the_deadline_still_counts():
    # the third pass arrives exactly at the deadline: promotion wins over the safe state
    states = run(plan(deadline_s=30, required_passes=3), ["pass", "pass", "pass"])
    assert states[-1].decision == "promote"


def test_consecutive_errors_are_counted_apart_from_inconclusive():
    states = run(plan(error_limit=2, inconclusive_limit=0), ["error", "error", "pass", "error", "error", "error"])
    assert [s.decision for s in states] == ["continue"] * 5 + ["rollback"]
    assert states[-1].inconclusives == 0 and states[-1].errors_in_row == 3
    assert "metrics source failing" in states[-1].reason


def test_decision_is_final():
    p = plan(failure_limit=0)
    decided = run(p, ["fail"])[-1]
    assert step(p, decided, check("pass", 20), 20) is decided


def test_warmup_runs_no_queries():
    src = StaticSource({("error_ratio", "canary"): ([(1.0, 0.0)], 10)})
    p = plan(warmup_s=30, interval_s=10)
    state = start(0.0)
    for t in (0.0, 10.0, 20.0):
        state = advance(p, state, {"metrics": src}, t)
    assert src.calls == [] and state.checks == 0
    state = advance(p, state, {"metrics": src}, 30.0)
    assert len(src.calls) == 1 and state.checks == 1


def test_replay_matches_stepwise_advance():
    """Reschedule mode rebuilds the state from history: same checks at the same times, same decision."""

    def figures(end: float):  # the canary turns bad 40 s in
        return [(t, 0.5 if t >= 40 else 0.0) for t in (end - 2, end - 1, end)], 100

    src = StaticSource({("error_ratio", "canary"): (figures, 100)})
    p = AnalysisPlan(rules=(Rule(**{**RULE, "min_samples": 3}),), interval_s=10, warmup_s=5, deadline_s=300)
    state = start(100.0)
    for now in (100.0, 105.0, 115.0, 125.0, 135.0, 145.0, 155.0):
        state = advance(p, state, {"metrics": src}, now)
    replayed = replay(p, {"metrics": src}, started_at=100.0, now=160.0)
    assert state.decision == replayed.decision == "rollback"
    assert state.history == replayed.history


def test_outcome_is_json_with_decision_and_evidence():
    src = StaticSource({("error_ratio", "canary"): ([(1.0, 0.5), (2.0, float("nan"))], 100)})
    p = plan(failure_limit=0)
    state = advance(p, start(0.0), {"metrics": src}, 2.0)
    payload = json.loads(json.dumps(outcome(state), allow_nan=False))
    assert payload["decision"] == "rollback"
    points = payload["evidence"]["results"][0]["points"]
    assert [p["value"] for p in points] == [0.5, None]
    assert payload["history"][0]["rules"] == {"error_ratio[canary]": "fail"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rules": [RULE], "safe_state": "hold"}, "safe_state 'hold'"),
        ({"rules": [RULE], "deadline": 60}, "unknown field(s) ['deadline']"),
        ({"rules": []}, "at least one rule"),
        ({"rules": [RULE], "warmup_s": 900, "deadline_s": 600}, "warmup_s must be >= 0 and < deadline_s"),
        ({"rules": [RULE], "failure_limit": -1}, "failure_limit must be an integer >= 0"),
        ({"rules": [{**RULE, "op": "=="}]}, "plan.rules[0]"),
    ],
)
def test_bad_plans_are_rejected(data: dict, message: str):
    with pytest.raises(ValueError) as err:
        AnalysisPlan.from_dict(data)
    assert message in str(err.value)


def test_plan_round_trips_through_json():
    p = plan(required_passes=2, safe_state="rollback")
    assert AnalysisPlan.from_dict(json.loads(json.dumps(p.to_dict()))) == p
