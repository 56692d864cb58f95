"""The advisor's regression cases (tests/advisor_cases.py) through dbopt and the peers that install
here, for the agreement table in bench/README.md.

    git --git-dir /work/.mirror/supabase+index_advisor/repo show HEAD:index_advisor--0.2.0.sql > /tmp/ia.sql
    .venv/bin/python bench/peers.py --index-advisor-sql /tmp/ia.sql \
        --dexter "ruby -I/tmp/dexter/lib /tmp/dexter/exe/dexter"

supabase ``index_advisor`` is one SQL function over HypoPG: it is loaded into the scratch database
from the given file at run time. Dexter runs as the given command (``-s`` one statement at a time,
against the same scratch database); bench/README.md says which version and how it was obtained.
Neither is part of this repository.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from advisor_cases import CASES, Case, schema

from bench.qualstats import qualstats_advice
from bench.report import table
from dbopt.advisor import AdvisorPolicy, advise
from dbopt.targets import open_target
from dbopt.targets.base import Statement

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
_FOUND = re.compile(r"^Index found: (?:\w+\.)?\"?([\w]+)\"? \((.+)\)$", re.MULTILINE)
_ON = re.compile(r"\bon\s+(?:\w+\.)?\"?([\w]+)\"?\s+using\s+btree\s*\((.+)\)", re.IGNORECASE)


def expected(case: Case) -> str:
    return f"{case.table}({', '.join(case.index)})" if case.index else f"none ({case.reason})"


def dbopt_answer(url: str, case: Case) -> tuple[str, bool]:
    st = Statement(Statement.digest_of(case.query), case.query, 100, 1000.0, 10.0)
    with open_target(url) as target:
        advice = advise(target, [st], AdvisorPolicy(min_table_rows=1000))
    got = [(r.table, r.columns) for r in advice.recommendations]
    text = "; ".join(f"{t}({', '.join(c)})" for t, c in got) or "none"
    ok = (case.table, case.index) in got if case.index else not got
    return text, ok


def index_advisor_answer(conn: psycopg.Connection, case: Case) -> tuple[str, bool]:
    try:
        statements, errors = conn.execute(
            "SELECT index_statements, errors FROM index_advisor(%s)", [case.query]
        ).fetchone()  # type: ignore[misc]
    except psycopg.Error as err:
        conn.rollback()
        return f"error: {str(err).splitlines()[0][:60]}", False
    if errors:
        return f"error: {errors[0][:60]}", False
    got = []
    for ddl in statements or []:
        m = _ON.search(ddl)
        if m:
            got.append((m[1], tuple(c.strip().strip('"') for c in m[2].split(","))))
    return _agrees(case, got)


def _agrees(case: Case, got: list[tuple[str, tuple[str, ...]]]) -> tuple[str, bool]:
    text = "; ".join(f"{t}({', '.join(c)})" for t, c in got) or "none"
    bare = case.table.split(".")[-1]
    return text, ((bare, case.index) in got if case.index else not got)


def dexter_answer(command: list[str], dbname: str, case: Case) -> tuple[str, bool]:
    done = subprocess.run(
        [*command, "-h", "127.0.0.1", "-U", "postgres", "-d", dbname, "-s", case.query],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode:
        return f"error: {(done.stderr or done.stdout).strip().splitlines()[-1][:60]}", False
    got = [(m[1], tuple(c.strip().strip('"') for c in m[2].split(","))) for m in _FOUND.finditer(done.stdout)]
    return _agrees(case, got)


def qualstats_answer(conn: psycopg.Connection, url: str, case: Case) -> tuple[str, bool]:
    """pg_qualstats_index_advisor() after the case's query ran three times with every qual sampled (its
    default samples 1 in max_connections); read-only and rolled back, so a write case does not run."""
    if "$1" in case.query:
        return "n/a (needs a value to run)", not case.index
    conn.execute("SELECT pg_qualstats_reset()")
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute("SET LOCAL pg_qualstats.sample_rate = 1")
            for _ in range(3):
                conn.execute(case.query).fetchall()
    except psycopg.Error as err:
        return f"n/a ({str(err).splitlines()[0][:40]})", not case.index
    with open_target(url) as target:  # its statistics are the server's, seen from any session
        advice = qualstats_advice(target)
    got = []
    for ddl in advice.ddl:
        if m := _ON.search(ddl):
            got.append((m[1], tuple(c.strip().strip('"') for c in m[2].split(","))))
    return _agrees(case, got)


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--index-advisor-sql", type=Path, help="supabase index_advisor--0.2.0.sql (see above)")
    args.add_argument(
        "--dexter", help="the command that runs Dexter, e.g. 'ruby -I/tmp/dexter/lib /tmp/dexter/exe/dexter'"
    )
    args.add_argument("--qualstats", action="store_true", help="pg_qualstats_index_advisor() too (preloaded)")
    opts = args.parse_args(argv)
    dexter = shlex.split(opts.dexter) if opts.dexter else None
    name = f"dbopt_peers_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(ADMIN, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0] + "/" + name
    rows = []
    try:
        # index_advisor DEALLOCATEs ALL: psycopg must not keep prepared statements of its own
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
            conn.execute("CREATE EXTENSION hypopg")
            if opts.qualstats:
                conn.execute("CREATE EXTENSION pg_qualstats")
            for statement in schema("postgres"):
                conn.execute(statement)
            if opts.index_advisor_sql:
                conn.execute(opts.index_advisor_sql.read_text())
            # index_advisor fails on every query while a mixed-case schema exists (it quotes the
            # schema twice): the quoted-schema case runs first, then that schema is dropped
            cases = sorted((c for c in CASES if "postgres" in c.engines), key=lambda c: c.table != "Bar.Foo")
            for case in cases:
                if case.table != "Bar.Foo":
                    conn.execute('DROP SCHEMA IF EXISTS "Bar" CASCADE')
                ours, ours_ok = dbopt_answer(url, case)
                row = {"case": case.name, "suite": case.peer or "dbopt", "expected": expected(case)[:44],
                       "dbopt": ours, "dbopt agrees": "yes" if ours_ok else "NO"}  # fmt: skip
                if dexter:
                    theirs, theirs_ok = dexter_answer(dexter, name, case)
                    row |= {"dexter": theirs[:40], "dexter agrees": "yes" if theirs_ok else "no"}
                if opts.qualstats:
                    theirs, theirs_ok = qualstats_answer(conn, url, case)
                    row |= {"pg_qualstats": theirs[:40], "pg_qualstats agrees": "yes" if theirs_ok else "no"}
                if opts.index_advisor_sql:
                    theirs, theirs_ok = index_advisor_answer(conn, case)
                    row |= {"index_advisor": theirs[:40], "index_advisor agrees": "yes" if theirs_ok else "no"}
                rows.append(row)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    print(table(rows, list(rows[0])))
    for col in ("dbopt agrees", "dexter agrees", "pg_qualstats agrees", "index_advisor agrees"):
        if col in rows[0]:
            print(f"{col}: {sum(r[col] == 'yes' for r in rows)} of {len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
