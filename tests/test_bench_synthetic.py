"""The benchmark's 200-statement workload (bench/synthetic.py): distinct, parseable, on the demo schema."""

from __future__ import annotations

import pytest

from bench.synthetic import synthetic_workload
from dbopt.advisor import parse_statement
from dbopt.demo_data import demo_tables


@pytest.mark.parametrize("dialect", ["postgres", "mysql", "sqlite"])
def test_two_hundred_distinct_parseable_statements_over_the_demo_tables(dialect: str) -> None:
    statements = synthetic_workload(dialect, 200)
    assert len({s.digest for s in statements}) == len({s.query for s in statements}) == 200
    tables = set(demo_tables(dialect))
    used = set()
    for s in statements:
        parsed = parse_statement(s.query, dialect)  # type: ignore[arg-type]
        assert parsed.kind == "select" and s.example == s.query and s.total_ms > 0
        used |= parsed.tables
    assert used <= tables and len(used) >= 3
    assert synthetic_workload(dialect, 200) == statements  # deterministic


def test_asking_for_more_shapes_than_exist_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="distinct statement shapes"):
        synthetic_workload("sqlite", 100_000)
