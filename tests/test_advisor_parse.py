"""Pure tests of the advisor's statement parser (no database)."""

from __future__ import annotations

import pytest

from dbopt.advisor.parse import ParseFailure, parse_sql, parse_statement, table_names

COLUMNS = {
    "orders": ["id", "customer_id", "status", "created_at", "total", "note"],
    "customers": ["id", "name", "country"],
    "items": ["id", "order_id", "sku", "qty"],
}


def usage(text: str, dialect: str = "postgres", table: str = "orders", columns=COLUMNS):
    parsed = parse_statement(text, dialect, columns)  # type: ignore[arg-type]
    found = [u for u in parsed.usages if u.table == table]
    assert len(found) == 1, parsed.usages
    return found[0]


@pytest.mark.parametrize(
    ("dialect", "text"),
    [
        ("postgres", "SELECT * FROM orders WHERE customer_id = $1 AND status IN ($2,$3) AND total > $4 LIMIT $5"),
        ("mysql", "SELECT * FROM `orders` WHERE `customer_id` = ? AND `status` IN (...) AND `total` > ? LIMIT ?"),
        ("sqlite", "SELECT * FROM orders WHERE customer_id = ? AND status IN (?, ?) AND total > ? LIMIT ?"),
    ],
)
def test_placeholders_in_every_dialect(dialect: str, text: str) -> None:
    u = usage(text, dialect)
    assert u.equality == ("customer_id", "status")
    assert u.range == ("total",)
    assert u.all_columns and u.has_limit and u.limit is None


def test_concrete_values_and_literal_limit() -> None:
    u = usage("SELECT id, total FROM orders WHERE status = 'paid' AND note IS NULL ORDER BY id LIMIT 20")
    assert u.equality == ("status", "note")
    assert u.order_by == (("id", False),)
    assert u.limit == 20
    assert not u.all_columns
    assert set(u.referenced) == {"id", "total", "status", "note"}


def test_between_and_prefix_like_are_ranges_but_infix_like_and_functions_are_not() -> None:
    u = usage(
        "SELECT count(*) FROM orders WHERE created_at BETWEEN $1 AND $2 AND status LIKE 'pa%' "
        "AND note LIKE '%x%' AND lower(customer_id::text) = $3"
    )
    assert u.range == ("created_at", "status")
    assert dict(u.non_sargable) == {
        "note": "LIKE '%x%' (leading wildcard)",
        "customer_id": "function or expression on the column",
    }
    assert "note" not in u.keyable()


def test_like_with_a_parameter_pattern_is_not_sargable() -> None:
    u = usage("SELECT * FROM orders WHERE note LIKE $1")
    assert u.range == () and u.non_sargable == (("note", "LIKE with a parameter pattern"),)


def test_join_with_aliases_and_unqualified_columns_resolved_from_the_catalog() -> None:
    text = (
        "SELECT c.name, total FROM customers c JOIN orders o ON o.customer_id = c.id "
        "WHERE country = $1 AND o.status = $2 ORDER BY created_at DESC"
    )
    orders = usage(text)
    assert orders.join == ("customer_id",)
    assert orders.equality == ("status",)
    assert orders.order_by == (("created_at", True),)
    customers = usage(text, table="customers")
    assert customers.join == ("id",)
    assert customers.equality == ("country",)


def test_order_by_spanning_two_tables_is_not_attributed() -> None:
    u = usage("SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY c.name, o.created_at")
    assert u.order_by == ()


def test_unqualified_column_in_a_join_without_catalog_is_left_unresolved() -> None:
    u = usage("SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id WHERE status = $1", columns={})
    assert u.equality == ()


def test_group_by_and_mixed_directions() -> None:
    u = usage("SELECT customer_id, status, count(*) FROM orders WHERE total > 10 GROUP BY customer_id, status")
    assert u.group_by == ("customer_id", "status")
    u = usage("SELECT * FROM orders WHERE customer_id = 1 ORDER BY status ASC, created_at DESC")
    assert u.order_by == (("status", False), ("created_at", True))


def test_subqueries_correlated_exists_in_and_cte() -> None:
    text = (
        "WITH recent AS (SELECT customer_id FROM orders WHERE created_at > $1) "
        "SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM items i WHERE i.order_id = o.id AND i.sku = $2) "
        "AND o.customer_id IN (SELECT customer_id FROM recent)"
    )
    parsed = parse_statement(text, "postgres", COLUMNS)
    by_table = {}
    for u in parsed.usages:
        by_table.setdefault(u.table, []).append(u)
    assert "recent" not in by_table  # a CTE is not a table
    items = by_table["items"][0]
    assert items.equality == ("sku",) and items.join == ("order_id",)
    shapes = sorted((u.equality, u.join, u.range) for u in by_table["orders"])
    assert shapes == [((), (), ("created_at",)), (("customer_id",), ("id",), ())]
    assert table_names(parse_sql(text, "postgres"), "postgres") == {"orders", "items"}


def test_same_column_or_is_an_in_list_other_or_is_nothing() -> None:
    assert usage("SELECT * FROM orders WHERE status = 'a' OR status = 'b'").equality == ("status",)
    assert usage("SELECT * FROM orders WHERE status = 'a' OR total = 1").equality == ()


def test_self_join_gives_two_usages() -> None:
    parsed = parse_statement(
        "SELECT a.id FROM orders a JOIN orders b ON a.customer_id = b.customer_id WHERE b.id = $1", "postgres", COLUMNS
    )
    assert sorted((u.equality, u.join) for u in parsed.usages) == [((), ("customer_id",)), (("id",), ("customer_id",))]


def test_writes() -> None:
    upd = parse_statement("UPDATE orders SET status = ? WHERE customer_id = ? AND created_at < ?", "sqlite", COLUMNS)
    assert (upd.kind, upd.written_table, upd.set_columns) == ("update", "orders", ("status",))
    assert upd.usages[0].equality == ("customer_id",) and upd.usages[0].range == ("created_at",)
    ins = parse_statement("INSERT INTO `orders` (`customer_id`, `status`) VALUES (...)", "mysql", COLUMNS)
    assert (ins.kind, ins.written_table, ins.usages) == ("insert", "orders", ())
    dele = parse_statement("DELETE FROM orders o WHERE o.created_at < $1", "postgres", COLUMNS)
    assert (dele.kind, dele.written_table, dele.usages[0].range) == ("delete", "orders", ("created_at",))


def test_catalog_spelling_and_postgres_folding() -> None:
    u = usage("SELECT * FROM Orders WHERE Customer_ID = $1", columns={"orders": ["id", "customer_id"]})
    assert u.equality == ("customer_id",)
    assert table_names(parse_sql('SELECT 1 FROM Orders JOIN "Mixed" ON true', "postgres"), "postgres") == {
        "orders",
        "Mixed",
    }


@pytest.mark.parametrize("text", ["SELEC * FROM x", "SELECT * FROM t WHERE (a = 1", "SELECT 1; SELECT 2"])
def test_unparseable_statements_raise_parse_failure(text: str) -> None:
    with pytest.raises(ParseFailure):
        parse_statement(text, "postgres")
