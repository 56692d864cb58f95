"""Run leases and index-build records in the history store, shared by the DAG's tasks and the CLI:
which run holds a database, and which index builds dbopt started there.

A lease is claimed atomically (SQLite ``BEGIN IMMEDIATE``, PostgreSQL ``SELECT … FOR UPDATE``), renewed
by every later claim of the same run, and released at the end of the run. A lease that expired, or
whose CLI process on this host is gone, is taken over: a crashed holder never blocks for good.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from dbopt.history.migrations import upgrade
from dbopt.history.models import IndexBuild, RunLease
from dbopt.history.store import history_url, make_engine


@contextmanager
def opened(url: str | None = None) -> Iterator[Engine]:
    """The history store's engine (``$DBOPT_HISTORY_URL``), migrated, disposed after the block."""
    engine = make_engine(url or history_url())
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Holder:
    """Who runs (or wants to run) dbopt on a database."""

    run_id: str
    plan_id: str
    kind: str  # "cli" (one process) | "dag" (many task processes, one Airflow run)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)  # at creation: task processes are forked
    since: datetime | None = None
    expires: datetime | None = None

    def describe(self) -> str:
        since = f" since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else ""
        until = f", lease until {self.expires:%Y-%m-%d %H:%M:%S} UTC" if self.expires else ""
        what = "Airflow run" if self.kind == "dag" else "CLI run"
        return f"{what} {self.run_id} (plan {self.plan_id}) on host {self.host}, pid {self.pid}{since}{until}"

    def stale(self, now: datetime) -> bool:
        """Expired, or a CLI process on this very host that no longer exists."""
        if self.expires is not None and self.expires <= now:
            return True
        return self.kind == "cli" and self.host == socket.gethostname() and not _alive(self.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _holder(row: RunLease) -> Holder:
    return Holder(row.run_id, row.plan_id, row.kind, row.host, row.pid, row.since, row.expires)


def current(engine: Engine, target: str) -> Holder | None:
    with engine.connect() as conn:
        row = conn.execute(select(RunLease).where(RunLease.target == target)).first()
    return None if row is None else _holder(row)  # type: ignore[arg-type]


def claim(engine: Engine, target: str, me: Holder, ttl_s: float) -> Holder | None:
    """Claim or renew ``target`` for ``me``; None on success, else the live holder (nothing changed)."""
    now = datetime.now(UTC)
    values = {"run_id": me.run_id, "plan_id": me.plan_id, "kind": me.kind, "host": me.host, "pid": me.pid,
              "since": now, "expires": now + timedelta(seconds=ttl_s)}  # fmt: skip
    table = RunLease.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(insert(table).values(target=target, **values).on_conflict_do_nothing(index_elements=["target"]))
        row = conn.execute(select(table).where(table.c.target == target).with_for_update()).first()
        held = Holder(row.run_id, row.plan_id, row.kind, row.host, row.pid, row.since, row.expires)
        if held.run_id == me.run_id:
            renewed = values | {"since": held.since}  # a renewal keeps the run's start
        elif held.stale(now) or (me.kind == held.kind == "dag" and me.plan_id == held.plan_id):
            # Airflow runs one run of a DAG at a time (max_active_runs=1): an earlier run of the same
            # DAG that still holds the lease died before its report task
            renewed = values
        else:
            return held
        conn.execute(update(table).where(table.c.target == target).values(**renewed))
    return None


def release(engine: Engine, run_id: str, target: str | None = None) -> int:
    """Release the leases of ``run_id`` (on one target, or all of them); how many were released."""
    stmt = delete(RunLease).where(RunLease.run_id == run_id)
    if target is not None:
        stmt = stmt.where(RunLease.target == target)
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount


def record_build(engine: Engine, target: str, index: str, run_id: str) -> None:
    """Write, before a build starts, that dbopt builds ``index`` on ``target`` (see ``IndexBuild``)."""
    table = IndexBuild.__table__  # type: ignore[attr-defined]
    row = {"target": target, "index_name": index, "run_id": run_id, "started_at": datetime.now(UTC)}
    with engine.begin() as conn:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(table).values(**row)
        conn.execute(stmt.on_conflict_do_update(index_elements=["target", "index_name"], set_=row))


def forget_build(engine: Engine, target: str, index: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(IndexBuild).where(IndexBuild.target == target, IndexBuild.index_name == index))


def build_started(engine: Engine, target: str, index: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            select(IndexBuild.index_name).where(IndexBuild.target == target, IndexBuild.index_name == index)
        ).first()
    return found is not None
