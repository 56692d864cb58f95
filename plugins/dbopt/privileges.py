"""Least privilege: which grants the connected user lacks for what dbopt does, and the GRANT that fixes each.

Run early (before the health gate): a missing grant otherwise surfaces mid-run as a failed index
build or as an empty workload. Every check reads the catalogs or the user's own grants; nothing is
changed and no DDL is attempted.

Minimal grants (see README "Least privilege"):

- PostgreSQL: member of ``pg_read_all_stats`` (pg_stat_statements rows of every user), ``CREATE``
  on each schema that holds a table to index (CREATE INDEX checks it), ownership of (membership in
  the owner role of) each such table (CREATE/DROP INDEX require it), ``SELECT`` on the tables
  (EXPLAIN, benchmarks), and the ``pg_stat_statements`` extension loaded in the database.
- MySQL/MariaDB: ``PROCESS`` (InnoDB transactions for the health gate), ``SELECT`` on
  ``performance_schema`` (the workload), ``SELECT, INDEX, ALTER`` on the database (EXPLAIN,
  ``ALTER TABLE … ADD/DROP INDEX``).
- SQLite: the database file and its directory writable by the process (journal/WAL files).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbopt.targets.base import Data, Target, TargetError


@dataclass(frozen=True)
class MissingGrant(Data):
    """One privilege the connected user lacks: what, on what, what for, and the statement that grants it."""

    privilege: str
    on: str
    needed_for: str
    fix: str

    @property
    def message(self) -> str:
        return f"missing {self.privilege} on {self.on} (needed for {self.needed_for}); fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "message": self.message}


def check_privileges(target: Target, tables: Iterable[str] | None = None) -> list[MissingGrant]:
    """The grants ``target``'s user lacks for dbopt's work on ``tables`` (None: every user table)."""
    wanted = None if tables is None else list(tables)
    return target.missing_grants(wanted)


def require_privileges(target: Target, tables: Iterable[str] | None = None) -> None:
    """Raise TargetError listing every missing grant with its fix; return quietly when none is missing."""
    missing = check_privileges(target, tables)
    if missing:
        lines = "\n".join(f"  - {m.message}" for m in missing)
        raise TargetError(f"the database user lacks {len(missing)} grant(s) dbopt needs:\n{lines}")


# --- PostgreSQL ------------------------------------------------------------------------------

_PG_TABLES_SQL = """
SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner), pg_has_role(current_user, c.relowner, 'USAGE'),
       has_table_privilege(c.oid, 'SELECT'), has_schema_privilege(n.oid, 'CREATE')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY 1, 2
"""


def missing_postgres(target: Target, tables: list[str] | None) -> list[MissingGrant]:
    user, database, superuser, stats_reader = target.execute(
        "SELECT current_user, current_database(), (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),"
        " pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')"
    )[0]
    if superuser:
        return []
    who = target.quote(user)
    missing: list[MissingGrant] = []
    if not stats_reader:
        missing.append(
            MissingGrant(
                "membership in pg_read_all_stats",
                "the server",
                "reading pg_stat_statements rows of all users (the workload) and pg_stat_activity (health)",
                f"GRANT pg_read_all_stats TO {who};",
            )
        )
    missing += _pg_statements_extension(target, database)
    rows = target.execute(_PG_TABLES_SQL)
    if tables is not None:
        # "t" means public.t; "s.t" names the schema (as the targets read table names)
        keys = {(t.split(".", 1) if "." in t else ["public", t])[0] + "." + t.split(".")[-1] for t in tables}
        rows = [r for r in rows if f"{r[0]}.{r[1]}" in keys]
    missing += _pg_table_grants(target, who, rows)
    return missing


def _pg_statements_extension(target: Target, database: str) -> list[MissingGrant]:
    if not target.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"):
        return [
            MissingGrant(
                "extension pg_stat_statements",
                f"database {database}",
                "the workload (statement statistics)",
                f"as a superuser in database {database}: CREATE EXTENSION pg_stat_statements; "
                "(with shared_preload_libraries = 'pg_stat_statements' in postgresql.conf)",
            )
        ]
    try:
        target.execute("SELECT 1 FROM pg_stat_statements LIMIT 0")
    except TargetError as err:  # the view errors when the library is not preloaded (or not readable)
        return [
            MissingGrant(
                "pg_stat_statements loaded at server start",
                "the server",
                "the workload (statement statistics)",
                "shared_preload_libraries = 'pg_stat_statements' in postgresql.conf, then restart "
                f"PostgreSQL (the view answered: {str(err).splitlines()[0]})",
            )
        ]
    return []


def _pg_table_grants(target: Target, who: str, rows: list[tuple]) -> list[MissingGrant]:
    no_create: dict[str, list[str]] = {}
    by_owner: dict[str, list[str]] = {}
    no_select: list[str] = []
    for schema, table, owner, owns, can_select, can_create in rows:
        name = f"{schema}.{table}"
        if not can_create:
            no_create.setdefault(schema, []).append(name)
        if not owns:
            by_owner.setdefault(owner, []).append(name)
        if not can_select:
            no_select.append(f"{target.quote(schema)}.{target.quote(table)}")
    missing = [
        MissingGrant(
            "CREATE",
            f"schema {schema}",
            f"CREATE INDEX on {', '.join(names)} (the index is created in the table's schema)",
            f"GRANT CREATE ON SCHEMA {target.quote(schema)} TO {who};",
        )
        for schema, names in no_create.items()
    ]
    missing += [
        MissingGrant(
            f"ownership (membership in role {owner})",
            ", ".join(names),
            "CREATE INDEX / DROP INDEX (PostgreSQL allows them only to the table owner)",
            f"GRANT {target.quote(owner)} TO {who};",
        )
        for owner, names in by_owner.items()
    ]
    if no_select:
        missing.append(
            MissingGrant(
                "SELECT",
                ", ".join(no_select),
                "EXPLAIN and the before/after benchmarks",
                f"GRANT SELECT ON {', '.join(no_select)} TO {who};",
            )
        )
    return missing


# --- MySQL / MariaDB --------------------------------------------------------------------------

# "GRANT <privileges> ON <object> TO <account> …" as SHOW GRANTS prints it; role grants
# ("GRANT `r` TO `u`@`h`") have no ON and are not privileges.
_GRANT_LINE = re.compile(r"^GRANT (?P<privileges>.+?) ON (?P<object>(?:FUNCTION |PROCEDURE |PACKAGE )?\S+) TO ")
_MYSQL_NEEDS = (
    # (privilege, object, database-level?, needed for)
    ("PROCESS", "*.*", False, "the health gate and the pre-ALTER metadata-lock check (other sessions)"),
    ("SELECT", "performance_schema.*", False, "the workload (performance_schema statement digests)"),
    ("SELECT", "{db}.*", True, "EXPLAIN, table statistics and the before/after benchmarks"),
    ("INDEX", "{db}.*", True, "ALTER TABLE … ADD/DROP INDEX"),
    ("ALTER", "{db}.*", True, "ALTER TABLE … ADD/DROP INDEX (online index builds)"),
)


def _mysql_grants(target: Any) -> dict[str, set[str]]:
    """Object ('*.*', 'db.*', 'db.t', lower-cased, unquoted) → privileges held, the user's and active roles'."""
    statements = ["SHOW GRANTS"]
    if not target.is_mariadb:  # MariaDB's SHOW GRANTS includes the enabled roles' grants; MySQL needs USING
        roles = target.execute("SELECT ROLE_NAME, ROLE_HOST FROM information_schema.ENABLED_ROLES")
        if roles:
            using = ", ".join(f"{_backticks(r)}@{_backticks(h)}" for r, h in roles)
            statements = [f"SHOW GRANTS FOR CURRENT_USER() USING {using}"]
    held: dict[str, set[str]] = {}
    for statement in statements:
        for (line,) in target.execute(statement):
            match = _GRANT_LINE.match(line)
            if not match or " " in match["object"]:  # routine grants do not matter here
                continue
            obj = match["object"].replace("`", "").lower()
            # column grants ("SELECT (a, b)") cover single columns only: not counted
            privileges = {p.strip().upper() for p in re.split(r",(?![^(]*\))", match["privileges"]) if "(" not in p}
            held.setdefault(obj, set()).update(privileges)
    return held


def _mysql_has(held: dict[str, set[str]], privilege: str, objects: Iterable[str]) -> bool:
    return any(privilege in held.get(o, ()) or "ALL PRIVILEGES" in held.get(o, ()) for o in objects)


def _backticks(name: str) -> str:
    """MySQL quoting for a GRANT a person runs: the target's quote() doubles '%' (for %-formatting drivers),
    which would turn the host '%' into '%%' in a statement that is copied, not sent through a driver."""
    return "`" + name.replace("`", "``") + "`"


def missing_mysql(target: Any, tables: list[str] | None) -> list[MissingGrant]:
    user, database = target.execute("SELECT CURRENT_USER(), DATABASE()")[0]
    name, _, host = user.rpartition("@")
    who = f"{_backticks(name)}@{_backticks(host)}"
    held = _mysql_grants(target)
    db = database.lower()
    missing = []
    for privilege, obj, per_database, why in _MYSQL_NEEDS:
        scope = obj.format(db=db)
        if _mysql_has(held, privilege, ["*.*", scope]):
            continue
        # table-level grants on every listed table are enough
        if per_database and tables and all(_mysql_has(held, privilege, [f"{db}.{t.lower()}"]) for t in tables):
            continue
        on = obj.format(db=_backticks(database))
        missing.append(MissingGrant(privilege, on, why, f"GRANT {privilege} ON {on} TO {who};"))
    return missing


# --- SQLite -----------------------------------------------------------------------------------


def missing_sqlite(target: Any) -> list[MissingGrant]:
    path = Path(target.path)
    missing = []
    for what, place in (("the database file", path), ("its directory", path.parent)):
        if not os.access(place, os.W_OK):
            missing.append(
                MissingGrant(
                    "write permission",
                    f"{what} {place}",
                    "CREATE/DROP INDEX (SQLite writes the file and a journal or WAL file beside it)",
                    f"chown $(id -un) {place} && chmod u+w {place}",
                )
            )
    return missing
