"""A password in the target URL never shows up in errors, reprs, result dicts, logs or backup files.

Real logins with a password ``s3cr3t-…`` (tests/db_users.py) connect over TCP to 127.0.0.1; then
every failure dbopt reports is provoked and everything it produced is searched for the password.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pymysql
import pytest
from sqlalchemy.engine import make_url

from dbopt.privileges import check_privileges
from dbopt.targets import TargetError, open_target
from dbopt.targets.base import IndexSpec, Target
from tests.db_users import Login, mysql_login, pg_login, run_as_admin


def _everything_said(err: BaseException) -> str:
    """The exception as a log would show it: message, repr and the whole chain with its traceback."""
    return f"{err}\n{err!r}\n" + "".join(traceback.format_exception(err))


def _provoke(target: Target, login: Login, tmp_path: Path, hold_lock) -> list[str]:
    """Run every failing and succeeding operation; return all text they produced."""
    said: list[str] = [repr(target), str(target)]
    for attempt in (
        lambda: target.table_stats(["no_such_table"]),
        lambda: target.execute("SELECT * FROM no_such_table"),
        lambda: target.execute("SELEC broken syntax"),
        lambda: target.explain("SELECT * FROM no_such_table WHERE x = 1"),
        lambda: target.backup(["no_such_table"], tmp_path / "bad"),
    ):
        # MySQLTarget.execute lets the driver's error through; the others raise TargetError
        with pytest.raises((TargetError, pymysql.MySQLError)) as caught:
            attempt()
        said.append(_everything_said(caught.value))
    said.append(json.dumps(target.create_index(IndexSpec("no_such_table", ("a",))).to_dict()))
    with hold_lock():  # another session holds the table: the build times out on its lock
        blocked = target.create_index(IndexSpec("items", ("a",)), lock_timeout_s=0.5, retries=0)
    assert blocked.status == "failed", blocked
    said.append(json.dumps(blocked.to_dict()))
    said.append(json.dumps(target.create_index(IndexSpec("items", ("b",))).to_dict()))
    backup = target.backup(["items"], tmp_path / "backup", undo=[IndexSpec("items", ("b",))])
    said.append(json.dumps(backup.to_dict()))
    said += [p.read_text(errors="replace") for p in (tmp_path / "backup").iterdir()]
    said.append(json.dumps(target.health().to_dict()))
    said.append(json.dumps([s.to_dict() for s in target.workload()]))
    said.append(json.dumps([m.to_dict() for m in check_privileges(target)]))
    return said


def _assert_secret_absent(password: str, said: list[str], caplog) -> None:
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    for i, text in enumerate([*said, logged, caplog.text]):
        assert password not in text, f"the password leaked in output #{i}: {text[:500]}"


@pytest.fixture
def pg_secret_login(pg_url):
    run_as_admin(pg_url, "CREATE TABLE items (id int PRIMARY KEY, a int, b int)")
    run_as_admin(pg_url, "INSERT INTO items SELECT g, g % 10, g % 100 FROM generate_series(1, 1000) g")
    with pg_login(pg_url) as login:
        run_as_admin(pg_url, f'ALTER TABLE items OWNER TO "{login.name}"')
        run_as_admin(pg_url, f'GRANT pg_read_all_stats TO "{login.name}"')
        run_as_admin(pg_url, f'GRANT CREATE ON SCHEMA public TO "{login.name}"')
        yield login


def test_postgres_password_never_shown(pg_url, pg_secret_login, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    login = pg_secret_login
    assert make_url(login.url).host == "127.0.0.1"  # over TCP, with the password sent

    @contextmanager
    def hold_lock():
        with psycopg.connect(pg_url) as holder:
            holder.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            yield
            holder.rollback()

    with open_target(login.url) as target:
        assert target.execute("SELECT current_user")[0][0] == login.name
        said = _provoke(target, login, tmp_path, hold_lock)
    bad_port = make_url(login.url).set(port=1).render_as_string(hide_password=False)
    with pytest.raises(TargetError) as caught:
        open_target(bad_port)
    said.append(_everything_said(caught.value))
    _assert_secret_absent(login.password, said, caplog)


@pytest.fixture
def mysql_secret_login(mysql_url):
    run_as_admin(mysql_url, "CREATE TABLE items (id INT PRIMARY KEY, a INT, b INT)")
    run_as_admin(mysql_url, "INSERT INTO items SELECT seq, seq % 10, seq % 100 FROM seq_1_to_1000")
    db = make_url(mysql_url).database
    with mysql_login(mysql_url) as login:
        run_as_admin(mysql_url, f"GRANT INDEX, ALTER ON `{db}`.* TO '{login.name}'@'%'")
        run_as_admin(mysql_url, f"GRANT PROCESS ON *.* TO '{login.name}'@'%'")
        run_as_admin(mysql_url, f"GRANT SELECT ON performance_schema.* TO '{login.name}'@'%'")
        yield login


def test_mysql_password_never_shown(mysql_url, mysql_secret_login, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    login = mysql_secret_login
    u = make_url(mysql_url)

    @contextmanager
    def hold_lock():
        holder = pymysql.connect(host=u.host, user="root", database=u.database, autocommit=False)
        try:
            with holder.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM items")  # holds a metadata lock until the transaction ends
            yield
        finally:
            holder.rollback()
            holder.close()

    with open_target(login.url) as target:
        said = _provoke(target, login, tmp_path, hold_lock)
    wrong = make_url(login.url).set(password=login.password + "-wrong").render_as_string(hide_password=False)
    with pytest.raises(TargetError) as caught:
        open_target(wrong)
    said.append(_everything_said(caught.value))
    assert "***" in str(caught.value)
    _assert_secret_absent(login.password, said, caplog)


def test_ddl_failure_in_a_thread_keeps_the_password_out_of_the_log(pg_url, pg_secret_login, caplog):
    """A failure raised in a worker thread (as in an Airflow task) is logged with its traceback."""
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []

    bad_db = make_url(pg_secret_login.url).set(database="no_such_database").render_as_string(hide_password=False)

    def connect_to_missing_database() -> None:
        try:
            open_target(bad_db)
        except TargetError as err:
            logging.getLogger("dbopt.test").exception("task failed")
            errors.append(_everything_said(err))

    thread = threading.Thread(target=connect_to_missing_database)
    thread.start()
    thread.join(30)
    assert errors and "no_such_database" in errors[0]
    _assert_secret_absent(pg_secret_login.password, errors, caplog)
