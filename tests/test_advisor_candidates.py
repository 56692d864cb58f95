"""Pure tests of candidate generation, the heuristic cost model, sizing and drop advice."""

from __future__ import annotations

from dbopt.advisor import AdvisorPolicy
from dbopt.advisor.candidates import generate, served_by_existing
from dbopt.advisor.cost import _Key, heuristic_cost
from dbopt.advisor.drops import drop_candidates
from dbopt.advisor.parse import parse_statement
from dbopt.advisor.select import estimated_size
from dbopt.targets.base import IndexInfo, IndexSpec, TableStats

ORDERS = TableStats(
    table="orders",
    rows=100_000,
    size_bytes=100_000 * 60,
    distinct={"id": 100_000, "customer_id": 5_000, "status": 3, "created_at": 90_000, "total": 500, "note": 99_000},
    top_frequency={"id": 0.00001, "customer_id": 0.001, "status": 0.9, "created_at": 0.0001, "total": 0.01},
    columns=("id", "customer_id", "status", "created_at", "total", "note"),
)
STATS = {"orders": ORDERS}
POLICY = AdvisorPolicy()


def candidates(text: str, dialect: str = "postgres", existing=(), stats: TableStats = ORDERS, policy=POLICY):
    parsed = parse_statement(text, dialect, {"orders": ORDERS.columns})  # type: ignore[arg-type]
    specs, rejected = generate(parsed.usages[0], stats, list(existing), policy, dialect)  # type: ignore[arg-type]
    return {(s.columns, s.descending, s.include) for s in specs}, rejected


def test_equality_then_range_most_selective_equality_first() -> None:
    specs, _ = candidates("SELECT id FROM orders WHERE total = $1 AND customer_id = $2 AND created_at > $3")
    keys = {cols for cols, _, _ in specs}
    assert ("customer_id", "total", "created_at") in keys  # eq (selective first), then the range
    assert ("customer_id", "total") in keys and ("customer_id",) in keys
    assert not any(cols.index("created_at") < len(cols) - 1 for cols in keys if "created_at" in cols)


def test_at_most_one_range_column_per_index() -> None:
    specs, _ = candidates("SELECT * FROM orders WHERE customer_id = $1 AND created_at > $2 AND total < $3")
    assert not any({"created_at", "total"} <= set(cols) for cols, _, _ in specs)


def test_sort_columns_follow_equality_with_desc_keys_when_order_by_is_desc() -> None:
    specs, _ = candidates("SELECT * FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 10")
    assert (("customer_id", "created_at"), (False, True), ()) in specs
    asc, _ = candidates("SELECT * FROM orders WHERE customer_id = $1 ORDER BY created_at LIMIT 10")
    assert (("customer_id", "created_at"), (), ()) in asc


def test_sort_key_fixed_by_equality_is_skipped() -> None:
    specs, _ = candidates("SELECT * FROM orders WHERE customer_id = $1 ORDER BY customer_id, created_at")
    assert (("customer_id", "created_at"), (), ()) in specs


def test_covering_variant_uses_include_on_postgres_and_trailing_keys_elsewhere() -> None:
    text = "SELECT customer_id, total FROM orders WHERE customer_id = ? AND created_at > ?"
    pg, _ = candidates(text.replace("?", "$1"))
    assert (("customer_id", "created_at"), (), ("total",)) in pg
    my, _ = candidates(text, "mysql")
    assert (("customer_id", "created_at", "total"), (), ()) in my
    star, _ = candidates("SELECT * FROM orders WHERE customer_id = $1")
    assert all(not inc for _, _, inc in star)
    no_include, _ = candidates(text.replace("?", "$1"), policy=AdvisorPolicy(allow_include=False))
    assert (("customer_id", "created_at", "total"), (), ()) in no_include


def test_no_duplicate_or_left_prefix_of_an_existing_index() -> None:
    existing = [IndexInfo(table="orders", name="ix_cust_created", columns=("customer_id", "created_at"))]
    specs, _ = candidates("SELECT * FROM orders WHERE customer_id = $1 AND created_at > $2", existing=existing)
    keys = {cols for cols, _, _ in specs}
    assert ("customer_id",) not in keys and ("customer_id", "created_at") not in keys
    assert ("created_at",) in keys


def test_existing_index_in_the_opposite_direction_serves_the_sort() -> None:
    existing = [IndexInfo(table="orders", name="ix", columns=("customer_id", "created_at"), descending=(True, True))]
    spec = IndexSpec(table="orders", columns=("customer_id", "created_at"))
    assert served_by_existing(spec, existing) is existing[0]
    invalid = [IndexInfo(table="orders", name="ix", columns=("customer_id",), valid=False)]
    assert served_by_existing(IndexSpec(table="orders", columns=("customer_id",)), invalid) is None


def test_unselective_leading_column_is_refused_unless_a_selective_column_follows() -> None:
    specs, rejected = candidates("SELECT * FROM orders WHERE status = 'paid'")
    assert specs == set()
    assert rejected[0].columns == ("status",) and "90%" in rejected[0].reason
    specs, _ = candidates("SELECT * FROM orders WHERE status = 'paid' AND created_at > $1")
    assert (("status", "created_at"), (), ()) in specs
    assert (("status",), (), ()) not in specs


def test_tiny_table_gets_nothing() -> None:
    tiny = TableStats(table="orders", rows=500, columns=ORDERS.columns)
    specs, rejected = candidates("SELECT * FROM orders WHERE customer_id = $1", stats=tiny)
    assert specs == set() and "too small" in rejected[0].reason


def test_non_sargable_predicates_give_no_candidate_and_say_why() -> None:
    specs, rejected = candidates("SELECT * FROM orders WHERE note LIKE '%abc%' OR lower(note) = 'x'")
    assert specs == set()
    specs, rejected = candidates("SELECT * FROM orders WHERE note LIKE '%abc%' AND lower(status) = $1")
    assert specs == set()
    assert {r.columns[0] for r in rejected} == {"note", "status"}


def heuristic(text: str, *indexes: IndexSpec | IndexInfo) -> float:
    parsed = parse_statement(text, "sqlite", {"orders": ORDERS.columns})
    return heuristic_cost(parsed, STATS, [_Key.of(ix) for ix in indexes])


def test_heuristic_prefers_composite_to_single_and_single_to_scan() -> None:
    text = "SELECT * FROM orders WHERE customer_id = ? AND total = ?"
    scan = heuristic(text)
    single = heuristic(text, IndexSpec(table="orders", columns=("customer_id",)))
    composite = heuristic(text, IndexSpec(table="orders", columns=("customer_id", "total")))
    assert composite < single < scan


def test_heuristic_rewards_an_index_that_serves_order_by_limit_and_covering() -> None:
    text = "SELECT created_at FROM orders WHERE customer_id = ? ORDER BY created_at DESC LIMIT 5"
    plain = heuristic(text, IndexSpec(table="orders", columns=("customer_id",)))
    sorted_ = heuristic(
        text, IndexSpec(table="orders", columns=("customer_id", "created_at"), descending=(False, True))
    )
    backward = heuristic(text, IndexSpec(table="orders", columns=("customer_id", "created_at")))
    assert sorted_ < plain and backward == sorted_
    covering = heuristic(
        "SELECT customer_id FROM orders WHERE customer_id = ?", IndexSpec(table="orders", columns=("customer_id",))
    )
    fetching = heuristic(
        "SELECT * FROM orders WHERE customer_id = ?", IndexSpec(table="orders", columns=("customer_id",))
    )
    assert covering < fetching


def test_index_on_an_unselective_column_does_not_beat_the_scan() -> None:
    text = "SELECT * FROM orders WHERE status = 'paid'"
    assert heuristic(text, IndexSpec(table="orders", columns=("status",))) == heuristic(text)


def test_estimated_size_formula() -> None:
    spec = IndexSpec(table="orders", columns=("customer_id", "created_at"))
    # 60-byte rows over 6 columns = 10 bytes a column; 2 keys + 16 bytes overhead; 90% leaf fill
    assert estimated_size(spec, ORDERS, "postgres") == int(100_000 * (2 * 10 + 16) / 0.9)
    assert estimated_size(spec, ORDERS, "mysql") > estimated_size(spec, ORDERS, "postgres")


def test_drop_candidates_never_unique_or_primary() -> None:
    existing = [
        IndexInfo(table="orders", name="orders_pkey", columns=("id",), unique=True, primary=True, unused=True),
        IndexInfo(table="orders", name="uq_note", columns=("note",), unique=True, unused=True),
        IndexInfo(table="orders", name="ix_cust", columns=("customer_id",)),
        IndexInfo(table="orders", name="ix_cust_status", columns=("customer_id", "status")),
        IndexInfo(table="orders", name="ix_total", columns=("total",), unused=True, size_bytes=1000),
        IndexInfo(table="orders", name="ix_used", columns=("created_at",), unused=True),
        IndexInfo(table="orders", name="ix_broken", columns=("status",), valid=False),
        IndexInfo(table="orders", name="ix_status_total", columns=("status", "total")),
    ]
    recommended = [IndexSpec(table="orders", columns=("status", "total", "created_at"))]
    drops = {d.index: d.reason for d in drop_candidates(existing, recommended, in_use={"ix_used"})}
    assert set(drops) == {"ix_cust", "ix_total", "ix_broken", "ix_status_total"}
    assert "ix_cust_status" in drops["ix_cust"]
    assert "INVALID" in drops["ix_broken"]
    assert "recommended" in drops["ix_status_total"]
    assert "no scans" in drops["ix_total"]
    assert "ix_total" not in {d.index for d in drop_candidates(existing, [], set(), include_unused=False)}
