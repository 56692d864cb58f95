"""The advisor's regression suite (tests/advisor_cases.py) on real PostgreSQL, MariaDB and SQLite.

One database per engine for the whole module (the schema is loaded once); each case advises on its
one statement and must give the expected index, or no index with the expected reason.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator

import psycopg
import pymysql
import pytest
from advisor_cases import CASES, Case, schema
from sqlalchemy.engine import make_url

from dbopt.advisor import AdvisorPolicy, advise
from dbopt.targets import open_target
from dbopt.targets.base import Statement, Target

POLICY = AdvisorPolicy(min_table_rows=1000)


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    from conftest import MY_HOST, PG_ADMIN

    name = f"dbopt_cases_{tmp_path_factory.getbasetemp().name[-8:]}".replace("-", "_")
    pg_admin = psycopg.connect(PG_ADMIN, autocommit=True)
    my_admin = pymysql.connect(host=MY_HOST, user="root", autocommit=True)
    pg_admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    pg_admin.execute(f'CREATE DATABASE "{name}"')
    with my_admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE `{name}`")
    pg_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    my_url = f"mysql://root@{MY_HOST}:3306/{name}"
    lite_url = f"sqlite:///{tmp_path_factory.mktemp('cases') / 'cases.db'}"
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION hypopg")
            for statement in schema("postgres"):
                conn.execute(statement)
        url = make_url(my_url)
        with pymysql.connect(host=url.host, user="root", database=name, autocommit=True) as conn, conn.cursor() as cur:
            for statement in schema("mysql"):
                cur.execute(statement)
        with sqlite3.connect(make_url(lite_url).database) as conn:
            for statement in schema("sqlite"):
                conn.execute(statement)
        opened = {d: open_target(u) for d, u in (("postgres", pg_url), ("mysql", my_url), ("sqlite", lite_url))}
        yield opened
        for t in opened.values():
            t.close()
    finally:
        pg_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with my_admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        pg_admin.close()
        my_admin.close()


def spelled(case: Case, dialect: str) -> str:
    return case.query if dialect == "postgres" else re.sub(r"\$\d+", "?", case.query)


@pytest.mark.parametrize(
    ("dialect", "case"),
    [pytest.param(d, c, id=f"{d}-{c.name}") for c in CASES for d in c.engines],
)
def test_case(targets: dict[str, Target], dialect: str, case: Case) -> None:
    query = spelled(case, dialect)
    st = Statement(Statement.digest_of(query), query, 100, 1000.0, 10.0)
    advice = advise(targets[dialect], [st], POLICY)
    got = [(r.table, r.columns) for r in advice.recommendations]
    if case.index is None:
        assert got == [], advice.recommendations
        (why,) = [s for s in advice.skipped if s.digest == st.digest]
        # the statement's own reason, or the refusal of the candidate that would have served it
        assert case.reason in " | ".join([why.reason, *(r.reason for r in advice.rejected)]), why
    else:
        assert (case.table, case.index) in got, (got, advice.skipped)
