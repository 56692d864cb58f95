"""Rollback rules as plain data, and the evaluator that turns samples into pass / fail / inconclusive.

A rule describes the BAD state: it breaches when ``value <op> limit`` holds, where ``limit`` is
``threshold`` or, for a relative rule, ``threshold × the baseline's value at the same timestamp``
(``canary latency_p95_ms > 1.2 × baseline``).

Semantics the rollback decision depends on:

* Exactly at the threshold: ``<`` and ``>`` do not breach, ``<=`` and ``>=`` do. No epsilon.
* inconclusive — no samples at all ("no data"); fewer requests in the window than ``min_requests``
  (for the baseline too, in a relative rule); fewer judged samples than ``min_samples`` (a NaN sample,
  i.e. 0/0, or one without a baseline sample at its timestamp, is not judged); a source error; or a
  breach still under way at the latest judged sample that has not yet lasted ``sustained_for_s``.
  Inconclusive never counts as pass.
* fail — breaching samples with no passing or unjudged sample between them, spanning at least
  ``sustained_for_s`` seconds (last timestamp − first ≥ sustained_for_s; with 0 one sample is enough).
  A spike shorter than that, which is over, does not fail.
* pass — enough judged samples and no sustained breach, and the latest judged sample does not breach.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from dbopt.metrics.sources import MetricSource, MetricSourceError, PartialDataError, Series
from dbopt.targets.base import Data

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
SCOPES = ("canary", "baseline", "service", "database")
Verdict = Literal["pass", "fail", "inconclusive"]
CheckVerdict = Literal["pass", "fail", "inconclusive", "error"]


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Rule(Data):
    metric: str  # e.g. latency_p95_ms, error_ratio, pool_usage, cache_hit_ratio
    op: str  # "<" | "<=" | ">" | ">=": the comparison that means trouble
    threshold: float  # absolute limit, or the factor applied to the baseline when relative_to is set
    scope: str = "canary"
    window_s: float = 300.0  # how far back each evaluation looks
    sustained_for_s: float = 0.0
    min_samples: int = 1  # judged samples needed before any verdict but inconclusive
    min_requests: int = 0  # requests the scope must have served in the window
    relative_to: str | None = None  # e.g. "baseline": limit = threshold × that scope's value
    source: str | None = None  # key in the sources mapping; default "database" or "metrics" by scope
    name: str = ""

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.metric, str) or not self.metric:
            problems.append("metric must be a non-empty string")
        if self.op not in OPS:
            problems.append(f"op {self.op!r} must be one of {', '.join(OPS)}")
        if not _is_number(self.threshold):
            problems.append(f"threshold {self.threshold!r} must be a finite number")
        if self.scope not in SCOPES:
            problems.append(f"scope {self.scope!r} must be one of {', '.join(SCOPES)}")
        if not _is_number(self.window_s) or self.window_s <= 0:
            problems.append(f"window_s {self.window_s!r} must be a number > 0")
        elif not _is_number(self.sustained_for_s) or not 0 <= self.sustained_for_s <= self.window_s:
            problems.append(
                f"sustained_for_s {self.sustained_for_s!r} must be between 0 and window_s ({self.window_s})"
            )
        if not isinstance(self.min_samples, int) or self.min_samples < 1:
            problems.append(f"min_samples {self.min_samples!r} must be an integer >= 1")
        if not isinstance(self.min_requests, int) or self.min_requests < 0:
            problems.append(f"min_requests {self.min_requests!r} must be an integer >= 0")
        if self.scope == "database" and self.min_requests:
            problems.append("min_requests must be 0 for scope 'database' (the database source counts no requests)")
        if self.relative_to is not None and (self.relative_to not in SCOPES or self.relative_to == self.scope):
            problems.append(f"relative_to {self.relative_to!r} must be another scope, e.g. 'baseline'")
        if self.relative_to == "database" or (self.relative_to and self.scope == "database"):
            problems.append("relative rules compare two service populations, not the database")
        if problems:
            raise ValueError(f"rule {self.name or self.metric!r}: " + "; ".join(problems))
        if not self.name:
            object.__setattr__(self, "name", f"{self.metric}[{self.scope}]")

    @property
    def source_name(self) -> str:
        return self.source or ("database" if self.scope == "database" else "metrics")

    def describe(self) -> str:
        limit = f"{self.threshold:g} × {self.metric}[{self.relative_to}]" if self.relative_to else f"{self.threshold:g}"
        lasting = f" for {self.sustained_for_s:g}s" if self.sustained_for_s else ""
        return f"fail if {self.metric}[{self.scope}] {self.op} {limit}{lasting} (window {self.window_s:g}s)"

    @classmethod
    def parse(cls, data: Mapping[str, Any] | Rule, where: str = "rule") -> Rule:
        """A rule from plain data; the error names ``where`` and the offending field."""
        if isinstance(data, Rule):
            return data
        cls.check_fields(data, where, required=("metric", "op", "threshold"))
        try:
            return cls(**data)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None


def parse_rules(items: Iterable[Mapping[str, Any] | Rule], where: str = "rules") -> tuple[Rule, ...]:
    rules = tuple(Rule.parse(item, f"{where}[{i}]") for i, item in enumerate(items))
    if not rules:
        raise ValueError(f"{where}: at least one rule is needed (no rules would pass vacuously)")
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{where}: duplicate rule name(s) {dupes}; set 'name' to tell them apart")
    return rules


def check_sources(rules: Sequence[Rule], sources: Mapping[str, MetricSource]) -> None:
    """Fail fast when a rule names a source that is missing or cannot answer its metric."""
    for rule in rules:
        source = sources.get(rule.source_name)
        if source is None:
            raise ValueError(f"rule {rule.name!r} needs source {rule.source_name!r}; sources given: {sorted(sources)}")
        if rule.metric not in source.metrics:
            raise ValueError(
                f"rule {rule.name!r}: the {source.kind} source has no metric {rule.metric!r}; "
                f"available: {sorted(source.metrics)}"
            )


@dataclass(frozen=True)
class Point(Data):
    """One sample as the evaluator saw it. breach None = not judged (see note)."""

    t: float
    value: float | None  # None when not finite (see note)
    limit: float | None
    breach: bool | None
    note: str = ""


@dataclass(frozen=True)
class RuleResult(Data):
    rule: str
    description: str
    verdict: Verdict
    reason: str
    value: float | None = None  # latest judged value
    limit: float | None = None  # the limit it was compared with
    samples: int = 0
    judged: int = 0
    requests: float | None = None
    baseline_requests: float | None = None
    longest_breach_s: float = 0.0
    breach_from: float | None = None  # the failing breach's first and last breaching sample (epoch s)
    breach_to: float | None = None
    points: tuple[Point, ...] = ()
    query: str = ""
    error: str | None = None
    # what was asked: the population whose ``requests`` these are, its comparison population, the window
    scope: str = ""
    relative_to: str | None = None
    window_s: float | None = None


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _points(rule: Rule, series: Series, baseline: Series | None) -> list[Point]:
    base = {round(s.t, 3): s.value for s in baseline.samples} if baseline else {}
    out = []
    for s in sorted(series.samples, key=lambda s: s.t):
        shown = _finite(s.value)
        note = "" if shown is not None else ("NaN (0/0)" if math.isnan(s.value) else f"{s.value}")
        if math.isnan(s.value):
            out.append(Point(s.t, None, None, None, note))
            continue
        limit = rule.threshold
        if baseline is not None:
            b = base.get(round(s.t, 3))
            if b is None or math.isnan(b):
                out.append(Point(s.t, shown, None, None, "no baseline sample" if b is None else "baseline NaN (0/0)"))
                continue
            limit = rule.threshold * b
        out.append(Point(s.t, shown, _finite(limit), bool(OPS[rule.op](s.value, limit)), note))
    return out


def _breach_runs(points: Sequence[Point]) -> list[tuple[float, float]]:
    """(first, last) sample time of each run of breaching samples; a passing or unjudged sample ends a run."""
    runs: list[tuple[float, float]] = []
    start: float | None = None
    for p in points:
        if not p.breach:
            start = None
        elif start is None:
            start = p.t
            runs.append((p.t, p.t))
        else:
            runs[-1] = (start, p.t)
    return runs


def _asked(rule: Rule) -> dict[str, Any]:
    return {"scope": rule.scope, "relative_to": rule.relative_to, "window_s": rule.window_s}


def utc_time(t: float) -> str:
    """An epoch time as a reader places it (the samples' own clock: UTC)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def judge(rule: Rule, series: Series, baseline: Series | None = None) -> RuleResult:
    """The verdict of one rule on samples already fetched (pure; see the module docstring)."""
    points = _points(rule, series, baseline)
    judged = [p for p in points if p.breach is not None]
    result = RuleResult(
        rule=rule.name,
        description=rule.describe(),
        verdict="inconclusive",
        reason="",
        value=judged[-1].value if judged else None,
        limit=judged[-1].limit if judged else None,
        samples=len(points),
        judged=len(judged),
        requests=series.requests,
        baseline_requests=baseline.requests if baseline else None,
        points=tuple(points),
        query=series.query,
        **_asked(rule),
    )

    def verdict(v: Verdict, reason: str, **more: Any) -> RuleResult:
        return dataclasses.replace(result, verdict=v, reason=reason, **more)

    if not series.samples:
        return verdict("inconclusive", f"no data: no samples of {series.metric}[{series.scope}] in {rule.window_s:g}s")
    for s in (series, baseline) if baseline else (series,):
        if rule.min_requests and (s.requests is None or s.requests < rule.min_requests):
            served = "an unknown number of" if s.requests is None else f"{s.requests:g}"
            return verdict(
                "inconclusive",
                f"too few requests: {s.scope} served {served} requests in {rule.window_s:g}s "
                f"(min_requests {rule.min_requests})",
            )
    if len(judged) < rule.min_samples:
        unjudged = sorted({p.note for p in points if p.breach is None})
        why = f" (not judged: {', '.join(unjudged)})" if unjudged else ""
        return verdict("inconclusive", f"too few samples: {len(judged)} judged < min_samples {rule.min_samples}{why}")

    runs = _breach_runs(points)
    longest = max((last - first for first, last in runs), default=0.0)
    sustained = next(((f, la) for f, la in runs if la - f >= rule.sustained_for_s), None)
    if sustained is not None:
        first, last = sustained  # the whole breach, not only up to the sample that made it sustained
        return verdict(
            "fail",
            f"breached from {utc_time(first)} to {utc_time(last)} "
            f"({last - first:g}s over {sum(first <= p.t <= last for p in points)} samples, "
            f">= sustained_for {rule.sustained_for_s:g}s)",
            longest_breach_s=longest,
            breach_from=first,
            breach_to=last,
        )
    if judged[-1].breach:
        return verdict(
            "inconclusive",
            f"breaching at the latest sample, for {longest:g}s so far (< sustained_for {rule.sustained_for_s:g}s)",
            longest_breach_s=longest,
        )
    spike = f"; a breach of {longest:g}s (< sustained_for) is over" if any(p.breach for p in judged) else ""
    return verdict("pass", f"{len(judged)} judged samples within the limit{spike}", longest_breach_s=longest)


def evaluate(rule: Rule, sources: Mapping[str, MetricSource], now: float | None = None) -> RuleResult:
    """Fetch the rule's samples (and its baseline's) and judge them; a source error is inconclusive."""
    source = sources[rule.source_name]
    try:
        series = source.query(rule.metric, rule.scope, rule.window_s, end=now)
        baseline = source.query(rule.metric, rule.relative_to, rule.window_s, end=now) if rule.relative_to else None
    except PartialDataError as err:  # the backend answered, incompletely: not judged, and not a source failure
        return RuleResult(rule.name, rule.describe(), "inconclusive", str(err), **_asked(rule))
    except MetricSourceError as err:
        why = f"source error: {err}"
        return RuleResult(rule.name, rule.describe(), "inconclusive", why, error=str(err), **_asked(rule))
    return judge(rule, series, baseline)


@dataclass(frozen=True)
class CheckResult(Data):
    """All rules evaluated at one moment. fail > error > inconclusive > pass."""

    t: float
    verdict: CheckVerdict
    results: tuple[RuleResult, ...]

    def summary(self) -> dict[str, Any]:
        return {"t": self.t, "verdict": self.verdict, "rules": {r.rule: r.verdict for r in self.results}}


def combine(results: Sequence[RuleResult]) -> CheckVerdict:
    if any(r.verdict == "fail" for r in results):
        return "fail"
    if any(r.error for r in results):
        return "error"
    if any(r.verdict == "inconclusive" for r in results):
        return "inconclusive"
    return "pass"


def check(rules: Sequence[Rule], sources: Mapping[str, MetricSource], now: float | None = None) -> CheckResult:
    if not rules:
        raise ValueError("a check needs at least one rule (no rules would pass vacuously)")
    at = time.time() if now is None else now
    results = tuple(evaluate(rule, sources, at) for rule in rules)  # one end time for all
    return CheckResult(at, combine(results), results)
