"""The history store: every run, every step attempt and every scaling change, append-only.

Writes are insert-or-ignore on a natural key, so a task that crashed after writing and is run again
with the same attempt (same try number) adds nothing, while a real retry (next try number) or a
rerun that produced a different record adds a row. Nothing is ever updated or deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, Table, create_engine, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url

from dbopt.history import facts
from dbopt.history.migrations import upgrade
from dbopt.history.models import (
    BenchFigure,
    HealthFigure,
    IndexChange,
    Run,
    ScalingAction,
    Step,
    WorkloadStatement,
)
from dbopt.results import DONE

HISTORY_URL_ENV = "DBOPT_HISTORY_URL"
DEFAULT_HISTORY_PATH = Path(__file__).resolve().parents[3] / "var" / "history.db"


class HistoryError(ValueError):
    """A history URL or input the store cannot use; the message says which and how to fix it."""


def history_url() -> str:
    return os.environ.get(HISTORY_URL_ENV) or f"sqlite:///{DEFAULT_HISTORY_PATH}"


def _as_json(value: Any) -> Any:
    """JSON-able plain data (datetimes and other objects as text), as it will read back."""
    return json.loads(json.dumps(value, default=str))


def as_utc(value: datetime | str | None, what: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise HistoryError(f"{what}: {value!r} is not an ISO 8601 timestamp") from None
    if value.tzinfo is None:
        raise HistoryError(f"{what}: {value!r} has no time zone; pass an aware datetime (e.g. UTC)")
    value = value.astimezone(UTC)
    # A plain datetime: subclasses (pendulum's, in Airflow contexts) drop a stdlib tzinfo on arithmetic.
    return datetime(*value.timetuple()[:6], value.microsecond, tzinfo=UTC)


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    # pysqlite's own transaction handling defers BEGIN and skips it for DDL; take it over so every
    # transaction (migrations included) is atomic and writers queue instead of interleaving.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA foreign_keys = ON")
        dbapi_conn.execute("PRAGMA journal_mode = WAL")  # readers (reports) never block the writing tasks

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_engine(url: str | URL) -> Engine:
    """An engine for a history URL: ``sqlite:///path`` or ``postgresql://…`` (psycopg 3 driver)."""
    try:
        parsed = make_url(url)
    except Exception as err:
        raise HistoryError(f"{HISTORY_URL_ENV}: cannot parse the URL ({err})") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":  # SQLAlchemy would pick psycopg2, which is not installed
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    raise HistoryError(
        f"{HISTORY_URL_ENV}: unsupported database {backend!r} in {parsed.render_as_string(hide_password=True)}; "
        "use sqlite:///path/to/history.db or postgresql://user@host/db"
    )


def _insert_ignore(conn: Connection, table: Table, row: Mapping[str, Any], keys: list[str]) -> int | None:
    """Insert unless a row with the same natural key exists; the new id, or None if it existed."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table).values(**row).on_conflict_do_nothing(index_elements=keys).returning(table.c.id)
    return conn.execute(stmt).scalar()


def _row(obj: Any, columns: Iterable[str]) -> dict[str, Any]:
    return {c: getattr(obj, c) for c in columns}


class HistoryStore:
    """``HistoryStore()`` uses ``$DBOPT_HISTORY_URL`` (default ``sqlite:///<repo>/var/history.db``) and
    migrates the schema on first use."""

    def __init__(self, url: str | URL | None = None) -> None:
        self.engine = make_engine(url or history_url())
        upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writes --------------------------------------------------------------------------------
    def record_step(
        self,
        plan_id: str,
        dag_id: str,
        run_id: str,
        target: str | None,
        step: str,
        map_index: int | None,
        try_number: int,
        status: str,
        payload: Any = None,
        *,
        started_at: datetime | str | None = None,
        finished_at: datetime | str | None = None,
    ) -> bool:
        """Record one attempt of one step; False when that attempt was already recorded (kept as it was)."""
        if not (plan_id and dag_id and run_id and step and status):
            raise HistoryError("record_step needs plan_id, dag_id, run_id, step and status (none may be empty)")
        if not isinstance(try_number, int) or try_number < 0:
            raise HistoryError(f"record_step: try_number must be an integer ≥ 0, got {try_number!r}")
        start, end = as_utc(started_at, "started_at"), as_utc(finished_at, "finished_at")
        row = {
            "plan_id": plan_id,
            "dag_id": dag_id,
            "run_id": run_id,
            "target": target or "",
            "step": step,
            "map_index": -1 if map_index is None else map_index,
            "try_number": try_number,
            "status": status,
            "started_at": start,
            "finished_at": end,
            "duration_s": (end - start).total_seconds() if start and end else None,
            "recorded_at": datetime.now(UTC),
            "payload": _as_json(payload),
        }
        keys = ["dag_id", "run_id", "target", "step", "map_index", "try_number"]
        with self.engine.begin() as conn:
            return _insert_ignore(conn, Step.__table__, row, keys) is not None

    def record_task(self, plan_id: str, ti: Any, status: str, payload: Any = None) -> bool:
        """``record_step`` for an Airflow task instance (read duck-typed: ``dag_id``, ``run_id``,
        ``task_id`` as "target.step" or "step", ``map_index``, ``try_number``, ``start_date``); ends now."""
        target, _, step = ti.task_id.rpartition(".")
        return self.record_step(
            plan_id, ti.dag_id, ti.run_id, target, step, getattr(ti, "map_index", -1), ti.try_number, status, payload,
            started_at=getattr(ti, "start_date", None), finished_at=datetime.now(UTC),
        )  # fmt: skip

    def record_run(self, record: Mapping[str, Any]) -> int | None:
        """Record a final run record and the facts drawn from it; the new row id, or None when this
        exact record was already recorded for the run."""
        for key in ("plan", "dag_id", "run_id"):
            if not record.get(key):
                raise HistoryError(f"run record: field {key!r} is missing or empty (see dbopt.run_record.collect)")
        canonical = json.dumps(record, sort_keys=True, default=str)
        data = json.loads(canonical)
        gate = facts.gate(data)
        canary = facts.canary_summary(data)
        row = {
            "plan_id": data["plan"],
            "dag_id": data["dag_id"],
            "run_id": data["run_id"],
            "digest": hashlib.sha256(canonical.encode()).hexdigest(),
            "recorded_at": datetime.now(UTC),
            "started_at": _started(data.get("started")),
            "outcome": facts.outcome(data),
            "gate_decision": gate.decision if gate else None,
            "gate_reason": gate.reason if gate else None,
            "canary_decision": canary["decision"],
            "canary_reason": canary["reason"],
            "dry_run": facts.is_dry_run(data),
            "record": data,
        }
        with self.engine.begin() as conn:
            run_pk = _insert_ignore(conn, Run.__table__, row, ["dag_id", "run_id", "digest"])
            if run_pk is not None:
                _record_facts(conn, run_pk, data)
        return run_pk

    def record_scaling(
        self, dag_id: str, run_id: str, changes: Iterable[Mapping[str, Any]], *, try_number: int = 1
    ) -> int:
        """Record the scaling DAG's changes (``ScalingChange.to_dict()``); returns how many were new."""
        now = datetime.now(UTC)
        keys = ["dag_id", "run_id", "service", "region", "try_number"]
        added = 0
        with self.engine.begin() as conn:
            for i, change in enumerate(changes):
                try:
                    before, after = change["before"], change["after"]
                    row = {
                        "dag_id": dag_id,
                        "run_id": run_id,
                        "try_number": try_number,
                        "service": change["service"],
                        "region": change["region"],
                        "window": change.get("window", ""),
                        "local_time": change.get("local_time", ""),
                        "before_min": int(before["min_instances"]),
                        "before_max": int(before["max_instances"]),
                        "after_min": int(after["min_instances"]),
                        "after_max": int(after["max_instances"]),
                        "applied": bool(change.get("applied", False)),
                        "recorded_at": now,
                    }
                except (KeyError, TypeError, ValueError) as err:
                    raise HistoryError(
                        f"scaling change #{i}: missing or bad field {err} (expected ScalingChange.to_dict())"
                    ) from None
                added += _insert_ignore(conn, ScalingAction.__table__, row, keys) is not None
        return added

    # --- reads ---------------------------------------------------------------------------------
    def runs(
        self,
        since: datetime,
        until: datetime | None = None,
        plan_id: str | None = None,
        *,
        latest_only: bool = True,
        with_record: bool = False,
        by: Literal["recorded", "started"] = "recorded",
    ) -> list[dict[str, Any]]:
        """Run records in [since, until), oldest first, by the time they were recorded (what is new) or
        ``by="started"``: when the run started (recorded time where unknown). ``latest_only``: one per
        run (its newest record), as a rerun's record supersedes the earlier one for reporting."""
        start, end = as_utc(since, "since"), as_utc(until or datetime.now(UTC) + timedelta(seconds=1), "until")
        when = Run.recorded_at if by == "recorded" else func.coalesce(Run.started_at, Run.recorded_at)
        query = select(Run).where(when >= start, when < end)
        if plan_id:
            query = query.where(Run.plan_id == plan_id)
        if latest_only:
            newest = select(func.max(Run.id)).group_by(Run.dag_id, Run.run_id).scalar_subquery()
            query = query.where(Run.id.in_(newest))
        columns = [c.name for c in Run.__table__.columns if with_record or c.name != "record"]
        with self.engine.connect() as conn:
            rows = [_row(r, columns) for r in conn.execute(query.order_by(Run.id))]
            for row in rows:
                row |= _run_summary(conn, row["id"])
        return rows

    def record(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        """The newest recorded run record of a run."""
        query = select(Run.record).where(Run.dag_id == dag_id, Run.run_id == run_id).order_by(Run.id.desc())
        with self.engine.connect() as conn:
            return conn.execute(query.limit(1)).scalar()

    def steps(self, run_id: str, dag_id: str | None = None) -> list[dict[str, Any]]:
        """Every recorded attempt of every step of a run, in the order recorded."""
        query = select(Step).where(Step.run_id == run_id)
        if dag_id:
            query = query.where(Step.dag_id == dag_id)
        columns = [c.name for c in Step.__table__.columns]
        with self.engine.connect() as conn:
            return [_row(r, columns) for r in conn.execute(query.order_by(Step.id))]

    def scaling_actions(self, since: datetime, until: datetime | None = None) -> list[dict[str, Any]]:
        start, end = as_utc(since, "since"), as_utc(until or datetime.now(UTC) + timedelta(seconds=1), "until")
        query = select(ScalingAction).where(ScalingAction.recorded_at >= start, ScalingAction.recorded_at < end)
        columns = [c.name for c in ScalingAction.__table__.columns]
        with self.engine.connect() as conn:
            return [_row(r, columns) for r in conn.execute(query.order_by(ScalingAction.id))]

    def plan_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(Run.plan_id).distinct().order_by(Run.plan_id)).scalars())

    def latest_health(self, plan_id: str) -> dict[str, Any] | None:
        """The GO/NO-GO figures of the plan's newest run that had a health check."""
        query = select(Run.id, Run.run_id, Run.recorded_at, Run.gate_decision, Run.gate_reason).where(
            Run.plan_id == plan_id, Run.gate_decision.is_not(None)
        )
        with self.engine.connect() as conn:
            run = conn.execute(query.order_by(Run.id.desc()).limit(1)).first()
            if run is None:
                return None
            cols = [c.name for c in HealthFigure.__table__.columns if c.name not in ("id", "run_pk")]
            figures = conn.execute(select(HealthFigure).where(HealthFigure.run_pk == run.id).order_by(HealthFigure.id))
            return {**run._asdict(), "figures": [_row(f, cols) for f in figures]}

    def trend(self, plan_id: str, weeks: int = 8, *, until: datetime | None = None) -> list[dict[str, Any]]:
        """Per ISO week (oldest first, empty weeks included) over the ``weeks`` weeks up to ``until``:
        runs, the workload's calls-weighted mean latency (Σ total_ms / Σ calls of the extracted
        statements), the median of the benchmark medians before and after, indexes kept, reverted and
        dropped as unused."""
        if weeks < 1:
            raise HistoryError(f"trend: weeks must be ≥ 1, got {weeks}")
        end = as_utc(until, "until") or datetime.now(UTC)
        first = _week_start(end.date()) - timedelta(weeks=weeks - 1)
        since = datetime.combine(first, datetime.min.time(), UTC)
        buckets = {first + timedelta(weeks=i): _empty_week(first + timedelta(weeks=i)) for i in range(weeks)}
        for run in self.runs(since, end + timedelta(seconds=1), plan_id, by="started"):
            when = run["started_at"] or run["recorded_at"]
            week = buckets.get(_week_start(when.date()))
            if week is None:
                continue
            week["runs"] += 1
            week["no_go"] += run["gate_decision"] == "NO-GO"
            week["indexes_kept"] += run["indexes_kept"]
            week["indexes_reverted"] += run["indexes_reverted"]
            week["indexes_dropped_unused"] += run["indexes_dropped_unused"]
            week["_calls"] += run["workload_calls"]
            week["_total_ms"] += run["workload_total_ms"]
            week["_before"] += run["bench_before_medians"]
            week["_after"] += run["bench_after_medians"]
        return [_close_week(w) for w in buckets.values()]


def _started(value: Any) -> datetime | None:
    try:
        return as_utc(value, "started") if value else None
    except HistoryError:
        return None  # a record's free-text start time is informative only; recorded_at still orders it


def _record_facts(conn: Connection, run_pk: int, record: dict[str, Any]) -> None:
    stmts = [
        {
            "run_pk": run_pk,
            "target": s["target"],
            "rank": s["rank"],
            "digest": str(s.get("digest", ""))[:64],
            "query": str(s.get("query", "")),
            "calls": int(s.get("calls") or 0),
            "total_ms": float(s.get("total_ms") or 0.0),
            "mean_ms": float(s.get("mean_ms") or 0.0),
            "stddev_ms": s.get("stddev_ms"),
            "rows": s.get("rows"),
            "source": str(s.get("source") or ""),
        }
        for s in facts.statements(record)
    ]
    bench = []
    for b in facts.bench_rows(record):
        before, after, result = b["before"] or {}, b["after"] or {}, b["result"] or {}
        bench.append(
            {
                "run_pk": run_pk,
                "target": b["target"],
                "query": str(b["query"])[:200],
                "before_n": before.get("n"),
                "before_median_ms": before.get("median_ms"),
                "before_p95_ms": before.get("p95_ms"),
                "before_p99_ms": before.get("p99_ms"),
                "after_n": after.get("n"),
                "after_median_ms": after.get("median_ms"),
                "after_p95_ms": after.get("p95_ms"),
                "after_p99_ms": after.get("p99_ms"),
                "verdict": b["verdict"],
                "median_ratio": result.get("median_ratio"),
                "p_value": result.get("p_value"),
                "method": result.get("method") or b["after_method"] or b["before_method"],
            }
        )
    changes = [
        {
            "run_pk": run_pk,
            "target": c["target"],
            "action": c["action"],
            "step": c["step"],
            "table_name": c["table"],
            "index_name": c["index"],
            "status": c["status"],
            "statement": c["statement"],
            "size_bytes": c["size_bytes"],
            "duration_ms": c["duration_ms"],
            "kept": c["kept"],
            "reason": c["reason"],
            "error": c["error"],
        }
        for c in facts.index_changes(record)
    ]
    health = [
        {
            "run_pk": run_pk,
            "target": str(f.get("target") or ""),
            "rule": str(f.get("rule") or f.get("metric") or "?"),
            "metric": f.get("metric"),
            "op": f.get("op"),
            "threshold": f.get("threshold"),
            "limit_value": f.get("limit"),
            "value": f.get("value"),
            "verdict": f.get("verdict"),
            "reason": f.get("reason"),
        }
        for f in facts.gate_figures(record)
    ]
    for model, rows in (
        (WorkloadStatement, stmts),
        (BenchFigure, bench),
        (IndexChange, changes),
        (HealthFigure, health),
    ):
        if rows:
            conn.execute(model.__table__.insert(), rows)


def _run_summary(conn: Connection, run_pk: int) -> dict[str, Any]:
    """Counts and latency figures of one recorded run, from its fact rows."""
    sums = select(
        func.coalesce(func.sum(WorkloadStatement.calls), 0), func.coalesce(func.sum(WorkloadStatement.total_ms), 0.0)
    )
    calls, total = conn.execute(sums.where(WorkloadStatement.run_pk == run_pk)).one()
    changes = conn.execute(
        select(IndexChange.action, IndexChange.kept, IndexChange.status, IndexChange.step).where(
            IndexChange.run_pk == run_pk
        )
    ).all()
    bench = conn.execute(
        select(BenchFigure.before_median_ms, BenchFigure.after_median_ms).where(BenchFigure.run_pk == run_pk)
    ).all()
    # only what happened counts: a dry run's or a refused build's row says what would have been done
    created = [c for c in changes if c.action == "create" and c.status in DONE]
    dropped = [c for c in changes if c.action == "drop" and c.status == "dropped"]
    unused = [c for c in dropped if c.step == facts.UNUSED_DROP_STEP]
    return {
        "workload_calls": int(calls),
        "workload_total_ms": float(total),
        "workload_mean_ms": float(total) / int(calls) if calls else None,
        "indexes_created": len(created),
        "indexes_kept": sum(bool(c.kept) for c in created),
        "indexes_reverted": len(dropped) - len(unused),
        "indexes_dropped_unused": len(unused),
        "bench_before_medians": [b.before_median_ms for b in bench if b.before_median_ms is not None],
        "bench_after_medians": [b.after_median_ms for b in bench if b.after_median_ms is not None],
    }


def _week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _empty_week(start: date) -> dict[str, Any]:
    iso = start.isocalendar()
    counters = dict.fromkeys(
        ("runs", "no_go", "indexes_kept", "indexes_reverted", "indexes_dropped_unused", "_calls"), 0
    )
    return {"week": f"{iso.year}-W{iso.week:02d}", "week_start": start.isoformat(), **counters,
            "_total_ms": 0.0, "_before": [], "_after": []}  # fmt: skip


def _close_week(week: dict[str, Any]) -> dict[str, Any]:
    calls, total, before, after = (week.pop(k) for k in ("_calls", "_total_ms", "_before", "_after"))
    return week | {
        "workload_mean_ms": total / calls if calls else None,
        "workload_total_ms": total if calls else None,
        "bench_before_median_ms": statistics.median(before) if before else None,
        "bench_after_median_ms": statistics.median(after) if after else None,
    }
