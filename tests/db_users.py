"""Throwaway login roles/users with a password on the shared test servers (created and dropped by the tests).

Both servers authenticate 127.0.0.1 connections ('trust' in pg_hba for PostgreSQL), so the password
is sent over TCP and accepted: what the tests check is that dbopt never shows it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pymysql
from sqlalchemy.engine import make_url


@dataclass(frozen=True)
class Login:
    name: str
    password: str
    url: str  # the database URL with this login's name and password


def new_password() -> str:
    return f"s3cr3t-{uuid.uuid4().hex[:12]}"


@contextmanager
def pg_login(db_url: str) -> Iterator[Login]:
    """A LOGIN role with a password and no other privilege, for the database ``db_url`` names."""
    name, password = f"dbopt_u_{uuid.uuid4().hex[:8]}", new_password()
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
    url = make_url(db_url).set(username=name, password=password).render_as_string(hide_password=False)
    try:
        yield Login(name, password, url)
    finally:
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
                [name],
            )
            admin.execute(f'DROP OWNED BY "{name}"')  # the grants the test gave it in this database
            admin.execute(f'DROP ROLE "{name}"')


@contextmanager
def mysql_login(db_url: str) -> Iterator[Login]:
    """A user with a password and SELECT on the database ``db_url`` names (needed to connect to it)."""
    u = make_url(db_url)
    name, password = f"dbopt_u_{uuid.uuid4().hex[:8]}", new_password()
    admin = pymysql.connect(host=u.host, port=u.port or 3306, user="root", autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'")
            cur.execute(f"GRANT SELECT ON `{u.database}`.* TO '{name}'@'%'")
        url = u.set(username=name, password=password).render_as_string(hide_password=False)
        yield Login(name, password, url)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        admin.close()


def run_as_admin(db_url: str, statement: str) -> None:
    """Run one statement as the server's admin (postgres / root) in the database ``db_url`` names."""
    u = make_url(db_url)
    if u.get_backend_name() == "postgresql":
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(statement)
        return
    admin = pymysql.connect(host=u.host, port=u.port or 3306, user="root", database=u.database, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(statement)
    finally:
        admin.close()
