"""One dbopt run per database at a time.

Two locks, because a run is one process on the CLI but many task processes in Airflow:

- **the lease** (``dbopt_run_leases`` in the history store, shared by the DAG and the CLI on one
  installation) names the run that owns the database from its first step to its last, between
  tasks too; it expires (``run.lease_ttl_s``) so a run that died cannot block for ever, and a CLI
  lease whose process is gone is taken over at once;
- **the engine lock** (PostgreSQL ``pg_try_advisory_lock``, MySQL/MariaDB ``GET_LOCK``, SQLite a
  ``flock``-ed file beside the database) is held by whichever process is working right now; the
  server (or kernel) drops it when that process dies, and it also excludes a run on another machine
  with another history store while a step runs.

dbopt creates no table in the target database (it changes indexes only), hence the lease lives in the
history store. A second run is refused with the holder named (run id, host, pid, since when), or
waits when the plan says ``run.on_busy: wait``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Engine

from dbopt.history import leases
from dbopt.history.leases import Holder
from dbopt.plan import RunPolicy
from dbopt.targets.base import Target, TargetError

POLL_S = 2.0
# a sibling task of the same run (parallel mapped builds on one database) is waited for this long at most
SIBLING_WAIT_S = 6 * 3600.0


class TargetBusy(TargetError):
    """Another run holds the database; the message names it."""

    def __init__(self, message: str, *, same_run: bool = False) -> None:
        super().__init__(message)
        self.same_run = same_run  # a sibling task of this very run is working: wait for it


def cli_holder(plan_id: str) -> Holder:
    host, pid = socket.gethostname(), os.getpid()
    return Holder(f"cli-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{host}-{pid}", plan_id, "cli", host, pid)


def _acquire(target: Target, engine: Engine, me: Holder, ttl_s: float) -> str:
    key = target.identity()
    note = f"run {me.run_id} (plan {me.plan_id}) on {me.host} pid {me.pid}"
    if not target.try_run_lock(note):
        lease = leases.current(engine, key)
        if lease is not None and lease.run_id == me.run_id:
            raise TargetBusy(f"{key}: another task of this run is working on it", same_run=True)
        who = lease.describe() if lease else target.run_lock_holder() or "another session"
        raise TargetBusy(f"database {key} is busy: {who} holds dbopt's lock on it; one run at a time")
    other = leases.claim(engine, key, me, ttl_s)
    if other is not None:
        target.release_run_lock()
        raise TargetBusy(
            f"database {key} is busy: {other.describe()} holds it; one run at a time. It is released when that "
            "run ends (its report task, or the end of the CLI command) or when the lease expires"
        )
    return key


@contextmanager
def hold_target(target: Target, me: Holder, options: RunPolicy, *, release_lease: bool) -> Iterator[str]:
    """Hold ``target`` for ``me`` inside the block (yields its identity); raises ``TargetBusy`` when
    another run holds it (after waiting up to ``wait_timeout_s`` with ``on_busy: wait``).

    ``release_lease``: the CLI releases its lease at the end of the block; a DAG task keeps it for
    the run's later tasks (the run's report task releases it, see ``release_run``).
    """
    with leases.opened() as engine:
        start = time.monotonic()
        while True:
            try:
                key = _acquire(target, engine, me, options.lease_ttl_s)
                break
            except TargetBusy as busy:
                waited = time.monotonic() - start
                limit = SIBLING_WAIT_S if busy.same_run else options.wait_timeout_s
                if (not busy.same_run and options.on_busy == "fail") or waited >= limit:
                    if waited:
                        raise TargetBusy(f"{busy} (waited {waited:.0f}s)") from None
                    raise
                time.sleep(POLL_S)
        try:
            yield key
        finally:
            target.release_run_lock()
            if release_lease:
                leases.release(engine, me.run_id, key)


def release_run(run_id: str) -> int:
    """Release every lease of ``run_id`` (the end of a DAG run); how many there were."""
    with leases.opened() as engine:
        return leases.release(engine, run_id)
