"""A small versioned migration runner for the history tables (version kept in ``dbopt_schema_version``).

Why not Alembic: in the full stack the history may share the PostgreSQL database of Airflow's own
metadata, which Alembic already versions in ``alembic_version``; a second Alembic tree would need
its own version table, env.py and ini file for a handful of append-only tables. This runner is
the part of Alembic we need: ordered steps, each applied once, in one transaction, under a lock.

A fresh database gets the current models (``create_all``) and is stamped at the newest version (as
Alembic's "create_all, then stamp head"); an existing one runs only the steps above its version.
A new step is appended to ``MIGRATIONS`` and written against the schema of the step before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, func, inspect, select, text

from dbopt.history.models import Base, IndexBuild, RunLease, SchemaVersion

# PostgreSQL advisory lock key ("dbopt" in ASCII): two processes migrating at once wait for each other.
_PG_LOCK_KEY = 0x64626F7074


class HistorySchemaError(RuntimeError):
    """The history database has a schema this code cannot use."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _baseline(conn: Connection) -> None:
    """Version 1 is the schema of the models as first released; nothing to change from it."""


def _run_leases(conn: Connection) -> None:
    RunLease.__table__.create(conn)  # type: ignore[attr-defined]
    IndexBuild.__table__.create(conn)  # type: ignore[attr-defined]


def _index_change_step(conn: Connection) -> None:
    # Older rows keep NULL: the record they came from is not at hand, and they were all counted as reverts.
    conn.execute(text("ALTER TABLE dbopt_index_changes ADD COLUMN step VARCHAR(40)"))
    if conn.dialect.name == "postgresql":  # SQLite never enforced the lengths these columns outgrew
        conn.execute(text("ALTER TABLE dbopt_runs ALTER COLUMN canary_decision TYPE TEXT"))
        conn.execute(text("ALTER TABLE dbopt_health ALTER COLUMN rule TYPE TEXT"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial history schema", _baseline),
    Migration(2, "run leases and index builds: one run per database, ownership", _run_leases),
    Migration(
        3,
        "index changes name their step (a revert is not a drop_unused drop); canary decisions and rule names as text",
        _index_change_step,
    ),
)


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    # SQLite: the store opens every transaction with BEGIN IMMEDIATE, which already excludes other writers.


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table(SchemaVersion.__tablename__):
        return 0
    return conn.execute(select(func.max(SchemaVersion.version))).scalar() or 0


def upgrade(engine: Engine, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database to the newest version; returns it. Safe to call from several processes."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)) or not versions:
        raise ValueError(f"migrations must have unique, increasing versions; got {versions}")
    newest = versions[-1]
    with engine.begin() as conn:
        _lock(conn)
        have = current_version(conn)
        if have > newest:
            raise HistorySchemaError(
                f"the history database {engine.url.render_as_string(hide_password=True)} is at schema version "
                f"{have}, newer than this dbopt knows ({newest}): upgrade dbopt, or point DBOPT_HISTORY_URL "
                "at another database"
            )
        now = datetime.now(UTC)
        if have == 0:
            existing = [t for t in Base.metadata.tables if inspect(conn).has_table(t)]
            if existing:
                raise HistorySchemaError(
                    f"history tables {existing} exist without a {SchemaVersion.__tablename__} row: the database "
                    "was not created by dbopt's history store; use an empty database"
                )
            Base.metadata.create_all(conn)
            conn.execute(
                SchemaVersion.__table__.insert(),
                [{"version": newest, "description": migrations[-1].description, "applied_at": now}],
            )
            return newest
        for migration in migrations:
            if migration.version > have:
                migration.apply(conn)
                conn.execute(
                    SchemaVersion.__table__.insert(),
                    [{"version": migration.version, "description": migration.description, "applied_at": now}],
                )
        return newest
