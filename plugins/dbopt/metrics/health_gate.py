"""GO / NO-GO before (or after) a change, from the same sources and rules as the canary analysis.

GO only when every rule passes: a failing figure is NO-GO, and so is an inconclusive one (no data,
too few requests, NaN, source error) — a gate that cannot see does not open.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dbopt.metrics.rules import Rule, check, check_sources, parse_rules
from dbopt.metrics.sources import MetricSource
from dbopt.targets.base import Data


@dataclass(frozen=True)
class GateFigure(Data):
    """One figure: what it is, its threshold, what was measured, and the verdict."""

    rule: str
    metric: str
    scope: str
    op: str
    threshold: float
    relative_to: str | None
    value: float | None
    limit: float | None  # the threshold actually applied (× baseline for relative rules)
    verdict: str
    reason: str
    samples: int
    requests: float | None


@dataclass(frozen=True)
class GateResult(Data):
    decision: Literal["GO", "NO-GO"]
    reason: str
    checked_at: float
    figures: tuple[GateFigure, ...]

    def table(self) -> str:
        """A plain-text table for logs and reports."""
        rows = [f"{self.decision}: {self.reason}"]
        for f in self.figures:
            value = "n/a" if f.value is None else f"{f.value:.4g}"
            limit = f"{f.threshold:g}×{f.relative_to}" if f.relative_to else f"{f.threshold:g}"
            rows.append(f"  {f.verdict:<12} {f.rule:<28} {value:>10} (fail if {f.op} {limit})  {f.reason}")
        return "\n".join(rows)


def health_gate(
    rules: Iterable[Rule | Mapping[str, Any]], sources: Mapping[str, MetricSource], now: float | None = None
) -> GateResult:
    parsed = parse_rules(rules, "gate.rules")
    check_sources(parsed, sources)
    result = check(parsed, sources, now)
    by_name = {r.name: r for r in parsed}
    figures = tuple(
        GateFigure(
            rule=r.rule,
            metric=by_name[r.rule].metric,
            scope=by_name[r.rule].scope,
            op=by_name[r.rule].op,
            threshold=by_name[r.rule].threshold,
            relative_to=by_name[r.rule].relative_to,
            value=r.value,
            limit=r.limit,
            verdict=r.verdict,
            reason=r.reason,
            samples=r.samples,
            requests=r.requests,
        )
        for r in result.results
    )
    not_passing = [f.rule for f in figures if f.verdict != "pass"]
    if not not_passing:
        return GateResult("GO", f"all {len(figures)} figures pass", result.t, figures)
    failed = [f.rule for f in figures if f.verdict == "fail"]
    unclear = [f.rule for f in figures if f.verdict == "inconclusive"]
    reason = "; ".join(
        part
        for part in (failed and f"failing: {', '.join(failed)}", unclear and f"inconclusive: {', '.join(unclear)}")
        if part
    )
    return GateResult("NO-GO", reason, result.t, figures)
