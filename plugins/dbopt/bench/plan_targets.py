"""Absolute speed targets a plan sets (e.g. ``{"mean_ms": 15, "p95_ms": 25}``), checked per query."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dbopt.bench.runner import BenchResult
from dbopt.bench.stats import Summary
from dbopt.targets.base import Data

METRICS = tuple(f.name for f in dataclasses.fields(Summary) if f.name.endswith("_ms"))


@dataclass(frozen=True)
class TargetCheck(Data):
    query: str
    metric: str
    limit_ms: float
    measured_ms: float
    passed: bool  # measured ≤ limit


@dataclass(frozen=True)
class PlanTargetReport(Data):
    passed: bool
    checks: tuple[TargetCheck, ...]

    def failures(self) -> list[TargetCheck]:
        return [c for c in self.checks if not c.passed]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanTargetReport:
        return cls(passed=data["passed"], checks=tuple(TargetCheck.from_dict(c) for c in data["checks"]))


def _limits(targets: Mapping[str, Any]) -> dict[str, float]:
    if not targets:
        raise ValueError(f"plan targets are empty; give at least one of {', '.join(METRICS)}")
    for metric, limit in targets.items():
        if metric not in METRICS:
            raise ValueError(f"unknown plan target {metric!r}; use one of {', '.join(METRICS)}")
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit > 0:
            raise ValueError(f"plan target {metric!r} must be a positive number of milliseconds, got {limit!r}")
    return {m: float(v) for m, v in targets.items()}


def check_plan_targets(
    result: BenchResult, targets: Mapping[str, float], queries: Iterable[str] | None = None
) -> PlanTargetReport:
    """Check every metric limit against every query in ``queries`` (default: all measured)."""
    limits = _limits(targets)
    checks = []
    for name in result.names() if queries is None else queries:
        summary = result.query(name).summary
        for metric, limit in limits.items():
            measured = getattr(summary, metric)
            check = TargetCheck(name, metric, limit_ms=limit, measured_ms=measured, passed=measured <= limit)
            checks.append(check)
    return PlanTargetReport(passed=all(c.passed for c in checks), checks=tuple(checks))
