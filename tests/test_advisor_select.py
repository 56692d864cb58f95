"""The workload-wide search on a real SQLite database: replacing a pick no plan needs any more,
ORDER BY aware composites under the per-table limit, and the per-statement shortlist.

One 30k-row ``events`` table: 30 accounts (1000 rows each), ``kind`` 90% 'approved', ``created``
growing with the id (as in a log table).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from dbopt.advisor import AdvisorPolicy, advise, parse_statement
from dbopt.advisor.cost import Coster
from dbopt.advisor.select import WorkItem, select
from dbopt.advisor.shortlist import shortlist
from dbopt.targets import open_target
from dbopt.targets.base import IndexSpec, Statement, Target

ROWS = 30_000
LATEST = "SELECT id, created, payload FROM events WHERE account = 7 AND kind = 'pending' ORDER BY created DESC LIMIT 20"


@pytest.fixture
def events(sqlite_url: str) -> Iterator[Target]:
    conn = sqlite3.connect(make_url(sqlite_url).database)
    conn.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, account INTEGER NOT NULL, kind TEXT NOT NULL,"
        " created TEXT NOT NULL, payload TEXT NOT NULL)"
    )
    kinds = ["pending"] + ["rejected"] + ["approved"] * 18
    conn.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
        (
            (
                i,
                1 + i % 30,
                kinds[i * 7 % 20],
                f"2025-{1 + i * 12 // ROWS:02d}-{1 + i % 28:02d} {i % 24:02d}:00",
                f"p{i}",
            )
            for i in range(1, ROWS + 1)
        ),
    )
    conn.commit()
    conn.close()
    with open_target(sqlite_url) as target:
        yield target


def stmt(query: str, calls: int = 1000, mean_ms: float = 5.0) -> Statement:
    return Statement(Statement.digest_of(query), query, calls, calls * mean_ms, mean_ms, example=query)


def item(target: Target, query: str) -> WorkItem:
    stats = target.table_stats(["events"])
    return WorkItem(stmt(query), query, parse_statement(query, "sqlite", {"events": stats["events"].columns}))


def test_equality_then_order_by_desc_with_limit_gets_the_composite(events: Target) -> None:
    advice = advise(events, [stmt(LATEST)])
    rec = advice.recommendations[0]
    assert rec.columns[:3] == ("account", "kind", "created") and rec.spec.descending[:3] == (False, False, True)
    assert "sort on created" in rec.reason and rec.cost_after < rec.cost_before / 10
    assert not [r for r in advice.recommendations if r.columns[0] == "kind"]  # the unselective lead is refused


def test_a_pick_no_plan_uses_any_more_is_replaced_within_the_per_table_limit(events: Target) -> None:
    """(created) is cheaper per byte and serves the sort, so it is picked first; the composite then
    makes it dead weight and takes its place although the table allows only one new index."""
    stats = events.table_stats(["events"])
    items = [item(events, LATEST)]
    by_sort = IndexSpec("events", ("created",))
    composite = IndexSpec("events", ("account", "kind", "created"), descending=(False, False, True))
    coster = Coster(events, stats, [])
    alone = {s: coster.cost(LATEST, items[0].parsed, [s]).cost for s in (by_sort, composite)}
    assert alone[composite] < alone[by_sort] / 10  # the composite is far better for the query

    selection = select(items, {0: [by_sort, composite]}, coster, stats, AdvisorPolicy(max_indexes_per_table=1), {})
    assert [p.spec for p in selection.picks] == [composite]
    assert selection.picks[0].served and selection.final[0].used == {composite.name}


def test_a_pick_another_statement_still_uses_is_kept(events: Target) -> None:
    stats = events.table_stats(["events"])
    by_range = "SELECT count(*) FROM events WHERE created >= '2025-03-01' AND created < '2025-03-02'"
    items = [item(events, LATEST), item(events, by_range)]
    by_sort = IndexSpec("events", ("created",))
    composite = IndexSpec("events", ("account", "kind", "created"), descending=(False, False, True))
    selection = select(
        items, {0: [by_sort, composite], 1: [by_sort]}, Coster(events, stats, []), stats, AdvisorPolicy(), {}
    )
    assert {p.spec for p in selection.picks} == {by_sort, composite}


def test_shortlist_keeps_each_statements_cheapest_candidates_and_drops_what_helps_nobody(events: Target) -> None:
    stats = events.table_stats(["events"])
    unselective = "SELECT id FROM events WHERE kind = 'approved' LIMIT 100"
    items = [item(events, LATEST), item(events, unselective)]
    narrow = IndexSpec("events", ("account",))
    composite = IndexSpec("events", ("account", "kind", "created"), descending=(False, False, True))
    kind_only = IndexSpec("events", ("kind",))
    coster = Coster(events, stats, [])
    kept = shortlist(items, {0: [narrow, composite], 1: [kind_only]}, coster, 1, 0.2, lambda s: 1)
    assert kept == {0: [composite]}  # the cheapest, and (sizes being equal) the most cost cut per byte
    # a smaller index that cuts most of the cost joins as the compact choice
    kept = shortlist(items, {0: [narrow, composite]}, coster, 1, 0.2, lambda s: len(s.columns))
    assert kept == {0: [composite, narrow]}
