"""The advisor's regression cases (tests/advisor_cases.py) through dbopt and the peers that install
here, for the agreement table in bench/README.md.

    git --git-dir /work/.mirror/supabase+index_advisor/repo show HEAD:index_advisor--0.2.0.sql > /tmp/ia.sql
    .venv/bin/python bench/peers.py --index-advisor-sql /tmp/ia.sql

supabase ``index_advisor`` is one SQL function over HypoPG: it is loaded into the scratch database
from the given file at run time (never part of this repository). Dexter needs Ruby, which this
machine lacks: its expectations are the cases' own (``peer="dexter"``).
"""

from __future__ import annotations

import argparse
import re
import sys
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from advisor_cases import CASES, Case, schema

from bench.report import table
from dbopt.advisor import AdvisorPolicy, advise
from dbopt.targets import open_target
from dbopt.targets.base import Statement

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
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
    text = "; ".join(f"{t}({', '.join(c)})" for t, c in got) or "none"
    bare = case.table.split(".")[-1]
    ok = (bare, case.index) in got if case.index else not got
    return text, ok


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--index-advisor-sql", type=Path, help="supabase index_advisor--0.2.0.sql (see above)")
    opts = args.parse_args(argv)
    name = f"dbopt_peers_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(ADMIN, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0] + "/" + name
    rows = []
    try:
        # index_advisor DEALLOCATEs ALL: psycopg must not keep prepared statements of its own
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
            conn.execute("CREATE EXTENSION hypopg")
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
                if opts.index_advisor_sql:
                    theirs, theirs_ok = index_advisor_answer(conn, case)
                    row |= {"index_advisor": theirs[:40], "index_advisor agrees": "yes" if theirs_ok else "no"}
                rows.append(row)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    print(table(rows, list(rows[0])))
    for col in ("dbopt agrees", "index_advisor agrees"):
        if col in rows[0]:
            print(f"{col}: {sum(r[col] == 'yes' for r in rows)} of {len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
