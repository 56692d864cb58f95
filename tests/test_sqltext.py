"""One normalizer for the statements dbopt groups itself (MySQL slow log, SQLite query log)."""

from __future__ import annotations

import pytest

from dbopt.targets.sqltext import normalize


@pytest.mark.parametrize(
    ("sql", "normalized"),
    [
        ("SELECT * FROM t WHERE s = _utf8mb4'x' AND n = 5", "SELECT * FROM t WHERE s = ? AND n = ?"),
        ("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')", "INSERT INTO t (a, b) VALUES (?, ?)"),
        ("SELECT * FROM t WHERE a IN (1,2,3) AND b = -7", "SELECT * FROM t WHERE a IN (?) AND b = ?"),
        ("SELECT * FROM `t` WHERE `a` = 0x1F # tail", "SELECT * FROM `t` WHERE `a` = ?"),
        ("SELECT a - 1 FROM t LIMIT 10", "SELECT a - ? FROM t LIMIT ?"),
    ],
)
def test_mysql(sql: str, normalized: str) -> None:
    assert normalize(sql, "mysql") == normalized


def test_the_same_shape_groups_across_dialects() -> None:
    sql = "SELECT id FROM worklogs WHERE company_id = 3 AND author_email IN ('a@x', 'b@x') ORDER BY started DESC"
    expected = "SELECT id FROM worklogs WHERE company_id = ? AND author_email IN (?) ORDER BY started DESC"
    assert normalize(sql, "mysql") == normalize(sql, "sqlite") == expected
