"""Canary analysis as a pure state machine, in the manner of Flagger and Argo Rollouts.

Every ``interval_s`` a check evaluates all rules (``rules.check``); ``step`` folds its verdict into
the state and decides:

1. rollback when failed checks > ``failure_limit`` (Argo's ``failureLimit``: 0 = first failure);
2. the plan's ``safe_state`` when errored checks in a row > ``error_limit`` (metrics backend down;
   Argo's ``consecutiveErrorLimit``) or inconclusive checks > ``inconclusive_limit``;
3. promote after ``required_passes`` passing checks in a row (a fail, inconclusive or error resets it);
4. the ``safe_state`` when ``deadline_s`` has passed without any of the above — so "no traffic"
   ends in the safe state, never in a promotion by default;
5. otherwise continue.

Checks inside ``warmup_s`` are not run (cold starts inflate latency). Given the same checks, the
same decisions: the Airflow sensor (poke or reschedule) and trigger share this code.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dbopt.metrics.rules import CheckResult, Rule, check, parse_rules
from dbopt.metrics.sources import MetricSource
from dbopt.targets.base import Data

Decision = Literal["continue", "promote", "rollback"]
SAFE_STATES = ("rollback", "promote")
HISTORY = 50  # check summaries kept in the state (the XCom stays small)


@dataclass(frozen=True)
class AnalysisPlan(Data):
    rules: tuple[Rule, ...]
    interval_s: float = 60.0
    warmup_s: float = 0.0
    deadline_s: float = 900.0
    required_passes: int = 3
    failure_limit: int = 1
    inconclusive_limit: int = 5
    error_limit: int = 4
    safe_state: str = "rollback"  # the decision when the evidence never becomes conclusive

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", parse_rules(self.rules, "plan.rules"))
        problems = []
        for name in ("interval_s", "deadline_s"):
            if not isinstance(getattr(self, name), int | float) or getattr(self, name) <= 0:
                problems.append(f"{name} must be a number > 0")
        if not isinstance(self.warmup_s, int | float) or not 0 <= self.warmup_s < self.deadline_s:
            problems.append(f"warmup_s must be >= 0 and < deadline_s ({self.deadline_s})")
        for name, low in (("required_passes", 1), ("failure_limit", 0), ("inconclusive_limit", 0), ("error_limit", 0)):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < low:
                problems.append(f"{name} must be an integer >= {low}")
        if self.safe_state not in SAFE_STATES:
            problems.append(f"safe_state {self.safe_state!r} must be one of {SAFE_STATES}")
        if problems:
            raise ValueError("analysis plan: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnalysisPlan:
        cls.check_fields(data, "analysis plan", required=("rules",))
        return cls(**data)

    @property
    def backstop_s(self) -> float:
        return backstop_s(self.deadline_s, self.interval_s)


def backstop_s(deadline_s: float, interval_s: float) -> float:
    """A task or trigger timeout behind the analysis' own deadline (which decides first)."""
    return deadline_s + 2 * interval_s + 60


@dataclass(frozen=True)
class AnalysisState(Data):
    started_at: float
    decision: Decision = "continue"
    reason: str = ""
    decided_at: float | None = None
    checks: int = 0
    passes_in_row: int = 0
    failures: int = 0
    inconclusives: int = 0
    errors_in_row: int = 0
    history: tuple[dict[str, Any], ...] = ()  # check summaries, oldest first
    last_check: dict[str, Any] | None = None  # full evidence of the latest check


def start(now: float | None = None) -> AnalysisState:
    return AnalysisState(started_at=time.time() if now is None else now)


def in_warmup(plan: AnalysisPlan, state: AnalysisState, now: float) -> bool:
    return now - state.started_at < plan.warmup_s


def _decide(plan: AnalysisPlan, s: AnalysisState, now: float) -> tuple[Decision, str]:
    if s.failures > plan.failure_limit:
        return "rollback", f"{s.failures} failed checks > failure_limit {plan.failure_limit}"
    if s.errors_in_row > plan.error_limit:
        return plan.safe_state, (  # type: ignore[return-value]
            f"metrics source failing: {s.errors_in_row} errored checks in a row > error_limit {plan.error_limit}; "
            f"safe state {plan.safe_state}"
        )
    if s.inconclusives > plan.inconclusive_limit:
        return plan.safe_state, (  # type: ignore[return-value]
            f"{s.inconclusives} inconclusive checks > inconclusive_limit {plan.inconclusive_limit}; "
            f"safe state {plan.safe_state}"
        )
    if s.passes_in_row >= plan.required_passes:
        return "promote", f"{s.passes_in_row} passing checks in a row (required_passes {plan.required_passes})"
    if now - s.started_at >= plan.deadline_s:
        return plan.safe_state, (  # type: ignore[return-value]
            f"deadline {plan.deadline_s:g}s reached after {s.checks} checks with {s.passes_in_row}/"
            f"{plan.required_passes} passes in a row; safe state {plan.safe_state}"
        )
    return "continue", ""


def step(plan: AnalysisPlan, state: AnalysisState, result: CheckResult | None, now: float) -> AnalysisState:
    """Fold one check (None = none was run, e.g. warm-up) into the state and decide. Pure."""
    if state.decision != "continue":
        return state
    s = state
    if result is not None:
        v = result.verdict
        s = dataclasses.replace(
            s,
            checks=s.checks + 1,
            passes_in_row=s.passes_in_row + 1 if v == "pass" else 0,
            failures=s.failures + (v == "fail"),
            inconclusives=s.inconclusives + (v == "inconclusive"),
            errors_in_row=s.errors_in_row + 1 if v == "error" else 0,
            history=(*s.history, result.summary())[-HISTORY:],
            last_check=result.to_dict(),
        )
    decision, reason = _decide(plan, s, now)
    if decision == "continue":
        return s
    return dataclasses.replace(s, decision=decision, reason=reason, decided_at=now)


def advance(
    plan: AnalysisPlan, state: AnalysisState, sources: Mapping[str, MetricSource], now: float | None = None
) -> AnalysisState:
    """Run one check (unless warming up or already decided) and step."""
    now = time.time() if now is None else now
    if state.decision != "continue":
        return state
    result = None if in_warmup(plan, state, now) else check(plan.rules, sources, now)
    return step(plan, state, result, now)


def replay(
    plan: AnalysisPlan, sources: Mapping[str, MetricSource], started_at: float, now: float | None = None
) -> AnalysisState:
    """Rebuild the state by re-running every check due since ``started_at`` at its own time.

    For reschedule-mode sensors, which keep nothing between pokes: the metrics backend's history is
    the state. Needs sources that can answer for past times (Prometheus, Cloud Monitoring).
    """
    now = time.time() if now is None else now
    state = start(started_at)
    due = started_at + plan.warmup_s
    while due <= now and state.decision == "continue":
        state = advance(plan, state, sources, due)
        due += plan.interval_s
    return step(plan, state, None, now)


def outcome(state: AnalysisState) -> dict[str, Any]:
    """The JSON-able result handed to the DAG (XCom / TriggerEvent payload)."""
    return {
        "decision": state.decision,
        "reason": state.reason,
        "started_at": state.started_at,
        "decided_at": state.decided_at,
        "checks": state.checks,
        "failures": state.failures,
        "inconclusives": state.inconclusives,
        "passes_in_row": state.passes_in_row,
        "errors_in_row": state.errors_in_row,
        "history": list(state.history),
        "evidence": state.last_check,
    }
