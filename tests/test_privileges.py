"""check_privileges against real restricted logins: each missing grant is reported, and its fix works."""

from __future__ import annotations

import os

import pytest

from dbopt.privileges import check_privileges, require_privileges
from dbopt.targets import TargetError, open_target
from dbopt.targets.base import IndexSpec
from tests.db_users import mysql_login, pg_login, run_as_admin


def _privileges(missing) -> set[str]:
    return {m.privilege.split(" (")[0] for m in missing}


def test_postgres_restricted_role_gets_every_fix_and_then_can_build(pg_url):
    run_as_admin(pg_url, "CREATE TABLE orders (id int PRIMARY KEY, customer int)")
    run_as_admin(pg_url, "INSERT INTO orders SELECT g, g % 50 FROM generate_series(1, 500) g")
    with pg_login(pg_url) as login, open_target(login.url) as target:
        missing = check_privileges(target)
        assert _privileges(missing) == {"membership in pg_read_all_stats", "CREATE", "ownership", "SELECT"}
        for m in missing:
            assert m.fix in m.message and login.name in m.fix and m.fix.startswith("GRANT ")
            assert m.to_dict()["message"] == m.message
        ownership = next(m for m in missing if m.privilege.startswith("ownership"))
        assert "public.orders" in ownership.on and ownership.fix == f'GRANT "postgres" TO "{login.name}";'
        with pytest.raises(TargetError, match="lacks 4 grant"):
            require_privileges(target)
        for m in missing:
            run_as_admin(pg_url, m.fix)
        assert check_privileges(target) == []
        require_privileges(target)
        # the grants are enough for what dbopt does
        assert target.create_index(IndexSpec("orders", ("customer",))).status == "created"
        assert target.workload() is not None


def test_postgres_scope_limited_to_named_tables(pg_url):
    run_as_admin(pg_url, "CREATE TABLE mine (id int)")
    run_as_admin(pg_url, "CREATE TABLE theirs (id int)")
    with pg_login(pg_url) as login, open_target(login.url) as target:
        run_as_admin(pg_url, f'ALTER TABLE mine OWNER TO "{login.name}"')
        run_as_admin(pg_url, f'GRANT CREATE ON SCHEMA public TO "{login.name}"')
        run_as_admin(pg_url, f'GRANT pg_read_all_stats TO "{login.name}"')
        assert check_privileges(target, ["mine"]) == []
        assert check_privileges(target, ["public.mine"]) == []
        theirs = check_privileges(target, ["theirs"])
        assert _privileges(theirs) == {"ownership", "SELECT"}
        assert all("theirs" in m.on and "mine" not in m.on for m in theirs)


def test_postgres_superuser_needs_nothing(pg_url):
    with open_target(pg_url) as target:
        assert check_privileges(target) == []


def test_postgres_missing_extension_is_reported(pg_url):
    run_as_admin(pg_url, "DROP EXTENSION pg_stat_statements")
    with pg_login(pg_url) as login, open_target(login.url) as target:
        ext = [m for m in check_privileges(target) if m.privilege == "extension pg_stat_statements"]
        assert len(ext) == 1 and "CREATE EXTENSION pg_stat_statements" in ext[0].fix


def test_mysql_restricted_user_gets_every_fix_and_then_can_build(mysql_url):
    run_as_admin(mysql_url, "CREATE TABLE orders (id INT PRIMARY KEY, customer INT)")
    run_as_admin(mysql_url, "INSERT INTO orders SELECT seq, seq % 50 FROM seq_1_to_500")
    with mysql_login(mysql_url) as login, open_target(login.url) as target:
        missing = check_privileges(target)
        assert [(m.privilege, m.on) for m in missing] == [
            ("PROCESS", "*.*"),
            ("SELECT", "performance_schema.*"),
            ("INDEX", f"`{target.database}`.*"),
            ("ALTER", f"`{target.database}`.*"),
        ]
        assert [m.fix for m in missing] == [f"GRANT {m.privilege} ON {m.on} TO `{login.name}`@`%`;" for m in missing]
        for m in missing:
            run_as_admin(mysql_url, m.fix)
        with open_target(login.url) as fresh:  # a new session sees the new grants
            assert check_privileges(fresh) == []
            # the grants are enough for what dbopt does
            assert fresh.create_index(IndexSpec("orders", ("customer",))).status == "created"
            assert fresh.health().long_transactions == 0
            fresh.workload()


def test_mysql_grants_through_a_role_and_on_tables_count(mysql_url):
    run_as_admin(mysql_url, "CREATE TABLE t (id INT PRIMARY KEY, a INT)")
    db = mysql_url.rsplit("/", 1)[1]
    role = f"dbopt_r_{db[-8:]}"
    with mysql_login(mysql_url) as login:
        try:
            run_as_admin(mysql_url, f"CREATE ROLE `{role}`")
            run_as_admin(mysql_url, f"GRANT INDEX ON `{db}`.* TO `{role}`")
            run_as_admin(mysql_url, f"GRANT `{role}` TO `{login.name}`@`%`")
            run_as_admin(mysql_url, f"SET DEFAULT ROLE `{role}` FOR `{login.name}`@`%`")
            run_as_admin(mysql_url, f"GRANT ALTER ON `{db}`.`t` TO `{login.name}`@`%`")
            with open_target(login.url) as target:
                assert _privileges(check_privileges(target, ["t"])) == {"PROCESS", "SELECT"}
                # without naming the table, ALTER on one table does not cover the database
                assert "ALTER" in _privileges(check_privileges(target))
        finally:
            run_as_admin(mysql_url, f"DROP ROLE IF EXISTS `{role}`")


def test_mysql_root_needs_nothing(mysql_url):
    with open_target(mysql_url) as target:
        assert check_privileges(target) == []


def test_sqlite_unwritable_file_is_reported(tmp_path, monkeypatch):
    db = tmp_path / "app.db"
    with open_target(f"sqlite:///{db}") as target:
        assert check_privileges(target) == []
        # root may write anything: make the permission check itself answer "no" for this file only
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(db) else real_access(p, mode))
        [missing] = check_privileges(target)
        assert missing.on == f"the database file {db}" and "chmod u+w" in missing.fix
