"""The history tables (SQLAlchemy 2 ORM). Append-only: rows are inserted, never updated or deleted.

Run-level facts (``dbopt_statements``, ``dbopt_bench``, ``dbopt_index_changes``, ``dbopt_health``) hang
off one recorded run record (``dbopt_runs.id``), so a rerun's facts never mix with an earlier record's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out (SQLite stores no zone; naive values read back are UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"history timestamps must be timezone-aware, got naive {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Payload = JSON(none_as_null=True)


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "dbopt_schema_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    description: Mapped[str] = mapped_column(String(200))
    applied_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Run(Base):
    """One final run record as the report task wrote it. A rerun that produced a different record adds
    a row; the same record recorded again (a retried report) is ignored (unique digest)."""

    __tablename__ = "dbopt_runs"
    __table_args__ = (
        UniqueConstraint("dag_id", "run_id", "digest", name="uq_dbopt_runs_record"),
        Index("ix_dbopt_runs_plan_recorded", "plan_id", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(64))
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of the canonical JSON of the record
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    outcome: Mapped[str] = mapped_column(String(40))
    gate_decision: Mapped[str | None] = mapped_column(String(8))
    gate_reason: Mapped[str | None] = mapped_column(Text)
    canary_decision: Mapped[str | None] = mapped_column(Text)  # "<service>/<region>: <decision>" per service
    canary_reason: Mapped[str | None] = mapped_column(Text)
    dry_run: Mapped[bool] = mapped_column(default=False)
    record: Mapped[dict[str, Any]] = mapped_column(Payload)


class Step(Base):
    """One attempt of one task (try number), as the task or its callback reported it."""

    __tablename__ = "dbopt_steps"
    __table_args__ = (
        UniqueConstraint(
            "dag_id", "run_id", "target", "step", "map_index", "try_number", name="uq_dbopt_steps_attempt"
        ),
        Index("ix_dbopt_steps_run", "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(64))
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    target: Mapped[str] = mapped_column(String(100))  # "" for run-level steps
    step: Mapped[str] = mapped_column(String(100))
    map_index: Mapped[int] = mapped_column(Integer)  # -1 when not mapped (Airflow's convention)
    try_number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    duration_s: Mapped[float | None] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    payload: Mapped[Any] = mapped_column(Payload, nullable=True)


class _RunFact:
    """Columns every per-run fact row has."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("dbopt_runs.id"), index=True)
    target: Mapped[str] = mapped_column(String(100))


class WorkloadStatement(_RunFact, Base):
    """The workload snapshot: a top statement with the statistics the engine measured."""

    __tablename__ = "dbopt_statements"

    rank: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    query: Mapped[str] = mapped_column(Text)
    calls: Mapped[int] = mapped_column(Integer)
    total_ms: Mapped[float] = mapped_column(Float)
    mean_ms: Mapped[float] = mapped_column(Float)
    stddev_ms: Mapped[float | None] = mapped_column(Float)
    rows: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(64), default="")


class BenchFigure(_RunFact, Base):
    """One benchmark query: before/after summaries (ms) and the verdict of the comparison."""

    __tablename__ = "dbopt_bench"

    query: Mapped[str] = mapped_column(String(200))
    before_n: Mapped[int | None] = mapped_column(Integer)
    before_median_ms: Mapped[float | None] = mapped_column(Float)
    before_p95_ms: Mapped[float | None] = mapped_column(Float)
    before_p99_ms: Mapped[float | None] = mapped_column(Float)
    after_n: Mapped[int | None] = mapped_column(Integer)
    after_median_ms: Mapped[float | None] = mapped_column(Float)
    after_p95_ms: Mapped[float | None] = mapped_column(Float)
    after_p99_ms: Mapped[float | None] = mapped_column(Float)
    verdict: Mapped[str | None] = mapped_column(String(20))
    median_ratio: Mapped[float | None] = mapped_column(Float)
    p_value: Mapped[float | None] = mapped_column(Float)
    method: Mapped[str | None] = mapped_column(Text)


class IndexChange(_RunFact, Base):
    """An index this run built or dropped, with the DDL and whether it was kept."""

    __tablename__ = "dbopt_index_changes"

    action: Mapped[str] = mapped_column(String(10))  # create | drop
    # the declared step (dbopt.steps) that made the change: tells a revert from a drop_unused drop;
    # NULL on rows recorded before schema version 3
    step: Mapped[str | None] = mapped_column(String(40))
    table_name: Mapped[str | None] = mapped_column(String(200))
    index_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str | None] = mapped_column(String(20))
    statement: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    kept: Mapped[bool | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class HealthFigure(_RunFact, Base):
    """One GO/NO-GO figure: measured value against its threshold."""

    __tablename__ = "dbopt_health"

    rule: Mapped[str] = mapped_column(Text)  # the plan's rule name: free text
    metric: Mapped[str | None] = mapped_column(String(64))
    op: Mapped[str | None] = mapped_column(String(4))
    threshold: Mapped[float | None] = mapped_column(Float)
    limit_value: Mapped[float | None] = mapped_column(Float)
    value: Mapped[float | None] = mapped_column(Float)
    verdict: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)


class ScalingAction(Base):
    """A min/max instances change of the scaling DAG (``dbopt.cloud.scaling.ScalingChange``)."""

    __tablename__ = "dbopt_scaling"
    __table_args__ = (
        UniqueConstraint("dag_id", "run_id", "service", "region", "try_number", name="uq_dbopt_scaling_change"),
        Index("ix_dbopt_scaling_recorded", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    try_number: Mapped[int] = mapped_column(Integer)
    service: Mapped[str] = mapped_column(String(100))
    region: Mapped[str] = mapped_column(String(64))
    window: Mapped[str] = mapped_column(String(100))
    local_time: Mapped[str] = mapped_column(String(64))
    before_min: Mapped[int] = mapped_column(Integer)
    before_max: Mapped[int] = mapped_column(Integer)
    after_min: Mapped[int] = mapped_column(Integer)
    after_max: Mapped[int] = mapped_column(Integer)
    applied: Mapped[bool] = mapped_column()
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RunLease(Base):
    """Which run holds a database right now: one row per database, claimed and released (the one table
    whose rows are updated and deleted — a lease is state, not history). See ``dbopt.runlock``."""

    __tablename__ = "dbopt_run_leases"

    target: Mapped[str] = mapped_column(String(250), primary_key=True)  # the database's identity
    run_id: Mapped[str] = mapped_column(String(250))
    plan_id: Mapped[str] = mapped_column(String(250))
    kind: Mapped[str] = mapped_column(String(8))  # "cli" | "dag"
    host: Mapped[str] = mapped_column(String(250))
    pid: Mapped[int] = mapped_column(Integer)
    since: Mapped[datetime] = mapped_column(UtcDateTime)
    expires: Mapped[datetime] = mapped_column(UtcDateTime)


class IndexBuild(Base):
    """An index build dbopt started on a database, written before the build: proof that an INVALID
    leftover of that name (a crash mid-build leaves no other mark) is dbopt's own to clean up."""

    __tablename__ = "dbopt_index_builds"

    target: Mapped[str] = mapped_column(String(250), primary_key=True)
    index_name: Mapped[str] = mapped_column(String(250), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(250))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
