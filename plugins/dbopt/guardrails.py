"""Guardrails checked right before each index change: the plan's maintenance window, the server's
health (replication lag, long transactions), the disk space an index build needs, and that the
statement is index DDL and nothing else.

Each check raises ``GuardrailError`` (a ``TargetError``) naming the rule, the measured figure and how
to proceed; nothing has been changed when it raises. ``guard_index_build`` runs them all and returns
what it checked, for the run's report.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from dbopt.advisor.select import estimated_size
from dbopt.plan import MaintenanceWindow, Plan
from dbopt.targets.base import Data, Dialect, HealthFigures, IndexSpec, Target, TargetError
from dbopt.targets.dialects import traits

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class GuardrailError(TargetError):
    """A safety rule refused a change; nothing was changed."""


@dataclass(frozen=True)
class Limits(Data):
    """What a change must stay within. None = no limit on that figure."""

    max_replication_lag_s: float | None = None
    max_long_transactions: int | None = 0
    long_transaction_s: float = 60.0
    # An index build needs room for its sort/spill files as well as the index: the estimate times this.
    build_space_factor: float = 2.0
    # Share of the disk that must stay free after the build.
    disk_reserve_fraction: float = 0.10
    # Upper bound on one index's estimated size; also the only disk rule when free space cannot be read.
    index_cap_bytes: int | None = None

    @classmethod
    def from_plan(cls, plan: Plan) -> Limits:
        gate = plan.health_gate
        lag_ms = gate.replication_lag_ms_max
        return cls(
            max_replication_lag_s=None if lag_ms is None else lag_ms / 1000.0,
            max_long_transactions=gate.long_transactions_max,
            long_transaction_s=gate.long_transaction_s,
            index_cap_bytes=int(plan.indexes.storage_budget_mb * 1024 * 1024),
        )


# --- maintenance window ----------------------------------------------------------------------


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def in_maintenance_window(window: MaintenanceWindow, now: datetime) -> bool:
    """True if ``now`` (aware, in the window's timezone) falls in the window.

    A window whose end is not after its start runs past midnight and belongs to the day it starts
    (``fri 22:00–02:00`` includes Saturday 01:00); start == end means the whole day.
    """
    minute = now.hour * 60 + now.minute
    start, end = _minutes(window.start), _minutes(window.end)
    today = _DAYS[now.weekday()]
    yesterday = _DAYS[(now.weekday() - 1) % 7]
    if start < end:
        return today in window.days and start <= minute < end
    if start == end:
        return today in window.days
    return (today in window.days and minute >= start) or (yesterday in window.days and minute < end)


def next_window_start(window: MaintenanceWindow, now: datetime) -> datetime:
    """The next time the window opens after ``now`` (aware), for the "run again at …" message."""
    start = _minutes(window.start)
    for days_ahead in range(8):
        day = (now + timedelta(days=days_ahead)).replace(hour=start // 60, minute=start % 60, second=0, microsecond=0)
        if day > now and _DAYS[day.weekday()] in window.days:
            return day
    raise ValueError("a maintenance window has at least one day")


def check_maintenance_window(plan: Plan, now: datetime | None = None) -> str:
    """Refuse outside ``plan.maintenance_window`` (in the timezone of the plan's schedule)."""
    window = plan.maintenance_window
    if window is None:
        return "no maintenance window in the plan: changes allowed at any time"
    tz = ZoneInfo(plan.schedule.timezone)
    local = (now or datetime.now(tz)).astimezone(tz)
    described = f"{','.join(window.days)} {window.start}-{window.end} {plan.schedule.timezone}"
    if not in_maintenance_window(window, local):
        raise GuardrailError(
            f"outside the maintenance window ({described}): it is {local:%a %H:%M} there. Run again when it "
            f"opens ({next_window_start(window, local):%a %Y-%m-%d %H:%M}), or change maintenance_window in plan "
            f"{plan.id!r}"
        )
    return f"inside the maintenance window ({described}) at {local:%a %H:%M}"


def window_gate(plan: Plan, moments: dict[str, datetime | None]) -> dict[str, Any] | None:
    """A NO-GO gate result when any of the run's ``moments`` (e.g. its logical time and its start) falls
    outside the maintenance window — a stale scheduled slot started late changes nothing — else None."""
    for what, moment in moments.items():
        if moment is None:
            continue
        try:  # a plain aware datetime: Airflow hands pendulum ones, whose arithmetic differs
            check_maintenance_window(plan, datetime.fromtimestamp(moment.timestamp(), tz=ZoneInfo("UTC")))
        except GuardrailError as err:
            reason = f"the run's {what} is {err}; nothing was changed"
            return {"decision": "NO-GO", "reason": reason, "targets": {}, "outside_window": True}
    return None


# --- health ----------------------------------------------------------------------------------


def health_problems(h: HealthFigures, limits: Limits) -> list[str]:
    """What in ``h`` exceeds ``limits`` (a figure the engine cannot tell, None, is not a problem here:
    the health gate decides about unknown figures)."""
    problems = []
    lag, lag_max = h.replication_lag_s, limits.max_replication_lag_s
    if lag is not None and lag_max is not None and lag > lag_max:
        problems.append(f"replication lag {lag:.3f}s exceeds {lag_max:.3f}s (a DDL adds to it)")
    count, count_max = h.long_transactions, limits.max_long_transactions
    if count is not None and count_max is not None and count > count_max:
        problems.append(
            f"{count} transaction(s) open longer than {limits.long_transaction_s:g}s (limit {count_max}; the longest"
            f" {h.longest_transaction_s or 0:.0f}s): an online index build waits for them while holding its lock"
        )
    return problems


def check_health(target: Target, limits: Limits) -> HealthFigures:
    """Refuse DDL while replicas lag or transactions stay open longer than the limits allow."""
    h = target.health(limits.long_transaction_s)
    problems = health_problems(h, limits)
    if problems:
        raise GuardrailError("refusing index DDL: " + "; ".join(problems) + ". Wait until they clear, then run again")
    return h


# --- disk ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskSpace(Data):
    path: str
    free_bytes: int
    total_bytes: int
    database_bytes: int | None = None


def disk_space(target: Target) -> DiskSpace | None:
    """Free and total bytes where the target keeps its data; None when that is not readable from here."""
    path, size = target.data_location()
    if path is None:
        return None
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return DiskSpace(str(path), usage.free, usage.total, size)


def estimate_index_bytes(target: Target, spec: IndexSpec) -> int:
    """The advisor's size estimate for ``spec`` from the table's current statistics."""
    qualified = spec.schema and traits(target.dialect).schema_qualified_stats
    table = f"{spec.schema}.{spec.table}" if qualified else spec.table
    stats = target.table_stats([table])[table]
    return estimated_size(spec, stats, target.dialect)


def check_disk(target: Target, index_bytes: int, limits: Limits) -> str:
    """Refuse a build whose estimated size exceeds the cap or would leave too little free disk."""
    mb = index_bytes / 1e6
    cap = limits.index_cap_bytes
    if cap is not None and index_bytes > cap:
        raise GuardrailError(
            f"refusing index build: estimated {mb:.1f} MB exceeds the cap of {cap / 1e6:.1f} MB "
            "(plan indexes.storage_budget_mb). Raise the budget or build a narrower index"
        )
    space = disk_space(target)
    if space is None:
        if cap is None:
            raise GuardrailError(
                "refusing index build: the free disk space of the database server cannot be read from here "
                "and no cap is configured; set indexes.storage_budget_mb in the plan"
            )
        return f"estimated {mb:.1f} MB within the cap of {cap / 1e6:.1f} MB (server disk not readable from here)"
    need = index_bytes * limits.build_space_factor
    usable = space.free_bytes - limits.disk_reserve_fraction * space.total_bytes
    if need > usable:
        raise GuardrailError(
            f"refusing index build: it needs about {need / 1e6:.1f} MB ({limits.build_space_factor:g} × the "
            f"estimated {mb:.1f} MB index) but {space.path} has {space.free_bytes / 1e6:.1f} MB free and "
            f"{limits.disk_reserve_fraction:.0%} of its {space.total_bytes / 1e9:.1f} GB must stay free. "
            "Free disk space first"
        )
    return f"needs ~{need / 1e6:.1f} MB; {space.free_bytes / 1e6:.0f} MB free on {space.path}"


# --- statement -------------------------------------------------------------------------------


def _plain_columns(keys: list[exp.Expression]) -> bool:
    """Index keys that are bare columns (optionally ASC/DESC): no expression can run a function."""
    return all(isinstance(k.this if isinstance(k, exp.Ordered) else k, exp.Column) for k in keys)


def _is_index_key(constraint: exp.Expression) -> bool:
    """MySQL ``ADD INDEX name (cols)`` or ``ADD UNIQUE INDEX name (cols)`` over plain columns."""
    if isinstance(constraint, exp.IndexColumnConstraint):
        return _plain_columns(constraint.expressions)
    return (
        isinstance(constraint, exp.UniqueColumnConstraint)
        and isinstance(constraint.this, exp.Schema)
        and _plain_columns(constraint.this.expressions)
    )


def _index_problem(tree: exp.Expression, dialect: Dialect) -> str | None:
    """Why ``tree`` is not one plain index DDL; None when it is."""
    if isinstance(tree, exp.Command):  # sqlglot's fallback for text it cannot parse
        return f"it does not parse as {dialect} (sqlglot kept it as an opaque command)"
    if isinstance(tree, exp.Create):
        index = tree.this
        if tree.kind != "INDEX" or not isinstance(index, exp.Index):
            return f"CREATE {tree.kind} is not CREATE INDEX"
        params = index.args.get("params")
        columns = params.args.get("columns") if params else None
        if not columns or not _plain_columns(columns):
            return "index keys must be plain columns (an expression could call a function)"
        if params.args.get("where") is not None:
            return "partial indexes (WHERE) are not built by dbopt"
        return None
    if isinstance(tree, exp.Drop):
        if tree.kind != "INDEX":
            return f"DROP {tree.kind} is not DROP INDEX"
        if tree.args.get("cascade"):
            return "DROP INDEX … CASCADE would drop the objects that depend on the index"
        return None
    if isinstance(tree, exp.Alter) and traits(dialect).alter_table_index_ddl:
        if tree.kind != "TABLE":
            return f"ALTER {tree.kind} is not ALTER TABLE"
        for action in tree.args.get("actions") or []:
            if isinstance(action, exp.Drop) and action.kind == "INDEX":
                continue
            if isinstance(action, exp.AddConstraint) and all(_is_index_key(c) for c in action.expressions):
                continue
            return f"ALTER TABLE action {action.sql(dialect='mysql')!r} is not ADD INDEX / DROP INDEX"
        options = tree.args.get("options") or []
        if not all(isinstance(o, exp.AlgorithmProperty | exp.LockProperty) for o in options):
            return "only ALGORITHM= and LOCK= may follow the index actions"
        return None
    return f"{type(tree).__name__.upper()} is not index DDL"


def only_index_ddl(sql: str, dialect: Dialect) -> None:
    """Raise GuardrailError unless ``sql`` parses as exactly one CREATE INDEX or DROP INDEX statement
    (for MySQL also ``ALTER TABLE … ADD/DROP INDEX …[, ALGORITHM=…, LOCK=…]`` and nothing else)."""
    try:
        trees = [t for t in sqlglot.parse(sql, read=dialect) if t is not None]
    except SqlglotError as err:
        raise GuardrailError(
            f"refusing a statement that does not parse as {dialect} SQL: {sql[:200]!r} ({err})"
        ) from None
    if len(trees) != 1:
        raise GuardrailError(f"refusing {len(trees)} statements where one index DDL was expected: {sql[:200]!r}")
    problem = _index_problem(trees[0], dialect)
    if problem is not None:
        raise GuardrailError(f"refusing {sql[:200]!r}: {problem}; dbopt only creates and drops indexes")


# --- all together ----------------------------------------------------------------------------


def guard_index_build(
    plan: Plan, target: Target, spec: IndexSpec, *, limits: Limits | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Every guardrail for building ``spec`` now; raises GuardrailError at the first refusal."""
    limits = limits or Limits.from_plan(plan)
    statement = target.index_ddl(spec)
    only_index_ddl(statement, target.dialect)
    window = check_maintenance_window(plan, now)
    health = check_health(target, limits)
    index_bytes = estimate_index_bytes(target, spec)
    disk = check_disk(target, index_bytes, limits)
    return {
        "index": spec.name,
        "statement": statement,
        "maintenance_window": window,
        "health": health.to_dict(),
        "estimated_index_bytes": index_bytes,
        "disk": disk,
        "limits": limits.to_dict(),
    }
