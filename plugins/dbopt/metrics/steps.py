"""A stepped canary (as Cloud Deploy and Flagger run them): traffic 10% → 25% → 50%, a full analysis at each
step; promotion only after the last step passed, rollback from the first step that did not.

Plain functions: shifting traffic and analysing are passed in, so the operator, the CLI and tests share
this code. Each step's verdict keeps the analysis's own outcome (rules, values, reasons) as its evidence.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dbopt.metrics.analysis import AnalysisPlan, advance, outcome, start
from dbopt.metrics.sources import MetricSource
from dbopt.targets.base import Data


@dataclass(frozen=True)
class StepVerdict(Data):
    percent: int  # the canary's share of traffic during this step
    started_at: float
    ended_at: float
    decision: str  # "promote" = this step passed; "rollback" = it did not
    reason: str
    evidence: dict[str, Any]  # the analysis outcome: checks, failures, the last check's rule results


def check_steps(steps: Any, where: str | None = "deploy.steps") -> tuple[int, ...]:
    """Integers strictly increasing within 1..99, e.g. [10, 25, 50]; the error names ``where`` (None: the
    caller names the field, as the plan's validation does) and the fix."""
    at = f"{where}: " if where else ""
    if not isinstance(steps, list | tuple) or not steps:
        raise ValueError(f"{at}expected a list of traffic percentages such as [10, 25, 50], got {steps!r}")
    bad = [s for s in steps if not isinstance(s, int) or isinstance(s, bool) or not 1 <= s <= 99]
    if bad:
        raise ValueError(f"{at}{bad} are not whole percentages between 1 and 99 (promotion makes it 100)")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise ValueError(f"{at}{list(steps)} must increase step by step (e.g. [10, 25, 50])")
    return tuple(steps)


def analyse(
    plan: AnalysisPlan,
    sources: Mapping[str, MetricSource],
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """One analysis from its start to a decision (checks every ``interval_s``); returns its outcome."""
    state = start(clock())
    while True:
        state = advance(plan, state, sources, clock())
        if state.decision != "continue":
            return outcome(state)
        sleep(plan.interval_s)


def resume_index(steps: Sequence[int], canary_share: int) -> int:
    """Where a retried rollout picks up: at the step whose share the canary already has (traffic reaches
    a step only after the steps before it passed), analysing it afresh; otherwise at the first step."""
    return list(steps).index(canary_share) if canary_share in steps else 0


def run_steps(
    steps: Sequence[int],
    shift: Callable[[int], Any],
    analyse_step: Callable[[int], Mapping[str, Any]],
    *,
    start_at: int = 0,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Shift to each step from ``start_at`` on (see ``resume_index``) and analyse it; stop at the first
    step whose analysis is not "promote".

    Returns ``{"decision": "promote" | "rollback", "reason", "failed_step", "steps": [StepVerdict …]}`` plus
    the analysis totals (checks, failures, inconclusives) and the last check's ``evidence``: the shape of a
    single analysis' outcome, so the run record and report read both alike. The caller promotes or rolls
    back (the DAG's promote/rollback tasks), so a crash here still rolls back.
    """
    steps = check_steps(steps)
    verdicts: list[StepVerdict] = []
    while True:
        percent = steps[start_at + len(verdicts)]
        began = clock()
        shift(percent)
        analysis = analyse_step(percent)
        verdicts.append(step_verdict(percent, began, clock(), analysis))
        if (decided := conclude(steps, start_at, verdicts)) is not None:
            return decided


def step_verdict(percent: int, began: float, ended: float, analysis: Mapping[str, Any]) -> StepVerdict:
    """One step's verdict from its analysis' outcome (``analysis.outcome``: decision, reason, checks …)."""
    result = dict(analysis)
    return StepVerdict(percent, began, ended, result["decision"], result.get("reason", ""), result)


def conclude(steps: Sequence[int], start_at: int, verdicts: Sequence[StepVerdict]) -> dict[str, Any] | None:
    """The rollout's outcome once its verdicts (for the steps from ``start_at`` on) decide it: the first
    step that did not pass, or the last one passed; None while steps remain."""
    earlier = list(steps[:start_at])
    last = verdicts[-1]
    if last.decision != "promote":
        return _outcome("rollback", f"step {last.percent}%: {last.reason}", last.percent, verdicts, earlier)
    if start_at + len(verdicts) < len(steps):
        return None
    passed = f"all {len(steps)} steps passed ({', '.join(f'{p}%' for p in steps)})"
    if earlier:
        passed += (
            f"; {', '.join(f'{p}%' for p in earlier)} in an earlier try (the canary already had {steps[start_at]}%)"
        )
    return _outcome("promote", passed, None, verdicts, earlier)


def _outcome(
    decision: str, reason: str, failed_step: int | None, verdicts: Sequence[StepVerdict], earlier: list[int]
) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(int(v.evidence.get(key) or 0) for v in verdicts)

    return {
        "decision": decision,
        "reason": reason,
        "failed_step": failed_step,
        "steps": [v.to_dict() for v in verdicts],
        "passed_earlier": earlier,  # steps a previous try passed (their evidence is in that try's log)
        "started_at": verdicts[0].started_at,
        "decided_at": verdicts[-1].ended_at,
        "checks": total("checks"),
        "failures": total("failures"),
        "inconclusives": total("inconclusives"),
        "evidence": verdicts[-1].evidence.get("evidence"),
    }
