"""Typed results of the weekly steps (declared in ``dbopt.steps``).

Each step returns one of these frozen dataclasses; they travel through XCom and the run record as
plain dicts (``to_dict``/``from_dict``), and the record, history and report read their attributes.
Fields another module adds to a step's output (a new benchmark figure, say) are kept in ``extra``
and written back unchanged, so nothing is lost on the way from a task to the report.

A step that changes the database returns a result with ``changes()``: every index it created or
dropped (or, in a dry run, would have), so nothing a run did to an index can miss the record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dbopt.targets.base import BackupResult, Data, IndexSpec, Statement

DONE = ("created", "exists", "dropped")  # statuses of an index change that really happened


@dataclass(frozen=True)
class Result(Data):
    """Base of every step result: typed fields, plus ``extra`` for fields this module does not know."""

    extra: dict[str, Any] = field(default_factory=dict, kw_only=True)
    # field name → how to turn its JSON form back into typed values
    NESTED: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return data.pop("extra") | data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):  # type: ignore[no-untyped-def]
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: cls.NESTED.get(k, _plain)(v) for k, v in data.items() if k in names}
        return cls(**known, extra={k: v for k, v in data.items() if k not in names and k != "extra"})


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _dicts(value: Any) -> tuple[dict[str, Any], ...]:
    return tuple(dict(v) for v in value or ())


@dataclass(frozen=True)
class IndexChange(Result):
    """One index created or dropped (``DdlResult`` plus the dry-run, refused and judged cases)."""

    action: str  # create | drop
    table: str
    index: str
    status: str  # created | exists | dropped | absent | failed | refused | dry_run
    statement: str = ""
    attempts: int = 0
    duration_ms: float | None = None
    error: str | None = None
    reason: str | None = None
    target: str = ""  # set where one step changes several targets (revert after a rollback)

    @property
    def done(self) -> bool:
        """It happened on the database (a dry run, a refusal or a failure did not)."""
        return self.status in DONE

    def changes(self) -> tuple[IndexChange, ...]:
        return (self,)


def _changes(value: Any) -> tuple[IndexChange, ...]:
    return tuple(IndexChange.from_dict(v) for v in value or ())


@dataclass(frozen=True)
class Gate(Result):
    """The health gate: GO only if every target's figures pass (``pipeline.gate_decision``)."""

    decision: str
    reason: str
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)  # per target: metrics GateResult dict

    def figures(self) -> list[dict[str, Any]]:
        """Every figure with the target it was measured for."""
        return [{"target": name, **f} for name, r in self.targets.items() for f in r.get("figures") or ()]


@dataclass(frozen=True)
class Workload(Result):
    source: str
    statements: tuple[Statement, ...] = ()
    NESTED: ClassVar = {"statements": lambda v: tuple(Statement.from_dict(s) for s in v)}


@dataclass(frozen=True)
class Advice(Result):
    """The indexes to build this run, with the inventory taken before any change."""

    preexisting: tuple[str, ...] = ()
    create: tuple[IndexSpec, ...] = ()
    ddl: dict[str, str] = field(default_factory=dict)
    foreign: tuple[dict[str, Any], ...] = ()  # indexes dbopt did not build, found under a name it wanted
    refused: tuple[dict[str, Any], ...] = ()  # planned indexes not built for their names (with the reason)
    explicit: tuple[str, ...] = ()
    recommendations: tuple[dict[str, Any], ...] = ()
    drop_candidates: tuple[dict[str, Any], ...] = ()
    skipped: tuple[dict[str, Any], ...] = ()
    write_costs: tuple[dict[str, Any], ...] = ()  # per table: the write cost the advisor charged, and its source
    queries: tuple[dict[str, Any], ...] = ()  # what the benchmarks measure
    not_built: tuple[IndexSpec, ...] = ()
    not_built_reason: str | None = None
    NESTED: ClassVar = {
        "create": lambda v: tuple(IndexSpec.from_dict(s) for s in v),
        "not_built": lambda v: tuple(IndexSpec.from_dict(s) for s in v),
        "recommendations": _dicts,
        "drop_candidates": _dicts,
        "foreign": _dicts,
        "refused": _dicts,
        "skipped": _dicts,
        "write_costs": _dicts,
        "queries": _dicts,
    }


@dataclass(frozen=True)
class Backup(Result):
    """The pre-change backup (``BackupResult``); kind "none" when the run takes none (dry run)."""

    kind: str
    path: str = ""
    verified: bool = False
    tables: tuple[str, ...] = ()
    size_bytes: int | None = None
    undo_path: str | None = None
    detail: str = ""

    @classmethod
    def of(cls, result: BackupResult) -> Backup:
        return cls.from_dict(result.to_dict())


@dataclass(frozen=True)
class Bench(Result):
    """One benchmark arm. ``queries``: ``QueryResult`` dicts (name, summary, samples, …); the rest of
    ``BenchResult`` (seed, rounds, …) rides in ``extra``."""

    method: str
    queries: tuple[dict[str, Any], ...] = ()
    NESTED: ClassVar = {"queries": _dicts}

    def summaries(self) -> dict[str, dict[str, Any]]:
        return {q["name"]: q for q in self.queries if "name" in q}


@dataclass(frozen=True)
class Verification(Result):
    """Which benchmark queries use each new index (EXPLAIN after the build), and the indexes' sizes."""

    used_by: dict[str, list[str]] = field(default_factory=dict)
    indexes_per_query: dict[str, list[str]] = field(default_factory=dict)
    sizes: dict[str, int | None] = field(default_factory=dict)
    method: str = "EXPLAIN after build"


@dataclass(frozen=True)
class Verdict(Result):
    table: str
    index: str
    keep: bool
    reason: str
    verdicts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Judgement(Result):
    """Keep or revert each built index; ``comparison``: the benchmark comparison's own evidence."""

    decision: str
    indexes: tuple[Verdict, ...] = ()
    revert: tuple[str, ...] = ()
    comparison: dict[str, Any] | None = None
    plan_targets: dict[str, Any] | None = None
    NESTED: ClassVar = {"indexes": lambda v: tuple(Verdict.from_dict(d) for d in v)}

    def verdict(self, index: str) -> Verdict | None:
        return next((d for d in self.indexes if d.index == index), None)

    def log_lines(self) -> list[str]:
        """One line per decision and query verdict, for the task log."""
        from dbopt.tasklog import decision_lines

        return decision_lines(self.to_dict())

    def query_verdicts(self) -> dict[str, dict[str, Any]]:
        return {q.get("name"): q for q in (self.comparison or {}).get("queries") or ()}


@dataclass(frozen=True)
class IndexChanges(Result):
    """Indexes dropped by a step (revert, drop of unused ones, revert after a rollback)."""

    indexes: tuple[IndexChange, ...] = ()
    reason: str = ""  # why nothing was dropped, where that needs saying
    NESTED: ClassVar = {"indexes": _changes}

    def changes(self) -> tuple[IndexChange, ...]:
        return self.indexes


@dataclass(frozen=True)
class RolloutStep(Result):
    """A Cloud Run step's result (deploy, traffic shift, promote, rollback); the state rides in ``extra``."""

    service: str = ""


@dataclass(frozen=True)
class CanaryOutcome(Result):
    """The canary analysis' decision with its evidence (totals over the steps of a stepped canary)."""

    decision: str
    reason: str = ""
    checks: int = 0
    failures: int = 0
    inconclusives: int = 0
    history: tuple[dict[str, Any], ...] = ()
    evidence: dict[str, Any] | None = None
    # a stepped canary (deploy.steps): each traffic step's verdict (``dbopt.metrics.steps.StepVerdict``)
    steps: tuple[dict[str, Any], ...] = ()
    failed_step: int | None = None
    passed_earlier: tuple[int, ...] = ()  # steps an earlier try of the task passed (a retry resumed after them)
    NESTED: ClassVar = {"history": _dicts, "steps": _dicts}


@dataclass(frozen=True)
class RollbackReverts(Result):
    """Per target: the indexes this run kept and dropped again after the canary rolled back."""

    targets: dict[str, tuple[IndexChange, ...]] = field(default_factory=dict)
    NESTED: ClassVar = {"targets": lambda v: {t: _changes(c) for t, c in v.items()}}

    def changes(self) -> tuple[IndexChange, ...]:
        return tuple(dataclasses.replace(c, target=t) for t, cs in self.targets.items() for c in cs)


@dataclass(frozen=True)
class CacheWarm(Result):
    """The cache warming after the rollout (``dbopt.cache.warm.WarmResult``), with the Redis hit ratio
    measured over ``cache.hit_ratio_window_s`` just before and just after it (None in a dry run)."""

    items: int
    bytes: int
    seconds: float
    query_seconds: float = 0.0
    write_seconds: float = 0.0
    batches: int = 0
    ttl_s: int = 0
    dry_run: bool = False
    target: str = ""
    keys: tuple[dict[str, Any], ...] = ()
    skipped: tuple[dict[str, Any], ...] = ()
    hit_ratio_before: dict[str, Any] | None = None  # dbopt.cache.plan_run.HitRatio
    hit_ratio_after: dict[str, Any] | None = None
    NESTED: ClassVar = {"keys": _dicts, "skipped": _dicts}

    def problems(self) -> list[str]:
        """Nothing warmed although there was something to warm: the step did not do what was asked."""
        if self.skipped and not self.items:
            return [f"nothing warmed: {', '.join(s['name'] + ': ' + s['reason'] for s in self.skipped)}"]
        return []


@dataclass(frozen=True)
class CloudSqlResize(Result):
    """Cloud SQL downsizing by replica (``dbopt.cloud.resize.ResizeResult``) and the expired standbys
    deleted before it (``StandbyAction``s)."""

    decision: str
    reason: str = ""
    active_instance: str = ""
    standby_instance: str | None = None
    standby_until: str | None = None
    previous_tier: str = ""
    tier: str = ""
    steps: tuple[dict[str, Any], ...] = ()
    benchmark: dict[str, Any] | None = None  # ReplicaBench: holds, reason, comparison (primary → replica), targets
    standbys: tuple[dict[str, Any], ...] = ()
    seconds: float = 0.0
    NESTED: ClassVar = {"steps": _dicts, "standbys": _dicts}

    def problems(self) -> list[str]:
        return [self.reason] if self.decision == "failed" else []


@dataclass(frozen=True)
class ScalingForecast(Result):
    """What the scaling rules ask for the next hour, per service and region (``dbopt.cloud.scaling.NextHour``)."""

    rules_file: str
    hour_start: int  # unix seconds
    services: tuple[dict[str, Any], ...] = ()
    history_source: str = ""
    NESTED: ClassVar = {"services": _dicts}
