"""A large workload for timing the advisor: many distinct statement shapes over the demo tables.

The demo workload has a dozen statements; production extractions hold hundreds. This builds ``n``
statements with distinct normalized forms (different filter columns, ranges, sorts, limits and
select lists over the demo schema), each with concrete literal values and made-up call counts, so
``advise()`` sees what it would see after a busy week: many shapes, most tables, overlapping columns.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from dbopt.demo_data.render import literal
from dbopt.targets.base import Statement


@dataclass(frozen=True)
class TableShape:
    """Columns of one demo table by the role a predicate can give them, with a sample value each."""

    table: str
    equality: dict[str, object]
    ranges: dict[str, tuple[object, object]]
    columns: tuple[str, ...]


SERVER = (
    TableShape(
        "analytics",
        {"user_id": "user42", "session_id": "sess1042", "event_type": "click", "page": "/app/chat"},
        {"event_date": ("2025-03-01 00:00:00", "2025-03-04 00:00:00"), "duration_ms": (1000, 2000)},
        ("event_id", "user_id", "session_id", "event_type", "event_date", "page", "duration_ms"),
    ),
    TableShape(
        "audit_log",
        {"entity_id": 4242, "entity_type": "report", "action": "export", "actor_id": "user7"},
        {"timestamp": ("2025-05-01 10:00:00", "2025-05-01 22:00:00")},
        ("id", "timestamp", "action", "entity_type", "entity_id", "actor_id", "ip_address"),
    ),
    TableShape(
        "sessions",
        {"session_id": "sess77", "user_id": "user77", "region_id": 5},
        {"created_at": ("2025-02-01 00:00:00", "2025-02-02 00:00:00"), "last_seen_at": ("2025-06-01", "2025-06-02")},
        ("id", "session_id", "user_id", "region_id", "status", "created_at", "last_seen_at"),
    ),
    TableShape(
        "user_preferences",
        {"user_id": "user9", "pref_key": "theme"},
        {"created_at": ("2025-04-01 00:00:00", "2025-04-08 00:00:00")},
        ("pref_id", "user_id", "pref_key", "pref_value", "created_at"),
    ),
    TableShape(
        "personas",
        {"tone": "calm", "pace": "brisk", "intent": "learn", "language": "de"},
        {"created_at": ("2025-01-01 00:00:00", "2025-02-01 00:00:00")},
        ("persona_id", "name", "tone", "pace", "intent", "language", "created_at"),
    ),
)

SQLITE = (
    TableShape(
        "worklogs",
        {
            "company_id": 2,
            "author_email": "user17@example.com",
            "project_key": "PRJ4",
            "jira_instance": "Company Main",
            "issue_type": "Bug",
            "status": "pending",
        },
        {"started": ("2025-03-01 00:00:00", "2025-03-08 00:00:00"), "time_spent_seconds": (3600, 7200)},
        ("id", "company_id", "issue_key", "author_email", "project_key", "started", "time_spent_seconds", "status"),
    ),
    TableShape(
        "billing_rates",
        {"billing_project_id": 3, "user_email": "user3@example.com", "issue_type": "Task"},
        {"hourly_rate": (50, 90)},
        ("id", "billing_project_id", "user_email", "issue_type", "hourly_rate", "currency"),
    ),
    TableShape(
        "factorial_leaves",
        {"user_id": 12, "status": "approved", "leave_type": "vacation"},
        {"start_date": ("2025-06-01", "2025-07-01")},
        ("id", "user_id", "leave_type", "status", "start_date", "end_date"),
    ),
)


def _shapes(t: TableShape, dialect: str) -> list[str]:
    """Every statement shape of one table: 1-2 equality columns × optional range × optional sort × select list."""
    lit = lambda v: literal(v, dialect)  # noqa: E731
    out = []
    eq_sets = [c for n in (1, 2) for c in itertools.combinations(t.equality, n)]
    for eq, rng, order, limit, width in itertools.product(
        eq_sets, (None, *t.ranges), (None, *t.ranges), (None, 10, 100), (2, len(t.columns))
    ):
        if limit and not order:
            continue
        where = [f"{c} = {lit(t.equality[c])}" for c in eq]
        if rng:
            lo, hi = t.ranges[rng]
            where += [f"{rng} >= {lit(lo)}", f"{rng} < {lit(hi)}"]
        text = f"SELECT {', '.join(t.columns[:width])} FROM {t.table} WHERE {' AND '.join(where)}"
        if order:
            text += f" ORDER BY {order} DESC"
        if limit:
            text += f" LIMIT {limit}"
        out.append(text)
    return out


def synthetic_workload(dialect: str, n: int = 200, seed: int = 0) -> list[Statement]:
    """``n`` statements with distinct texts over the demo tables of ``dialect``, each with calls and timings.

    Tables take turns so every table is represented; within a table the shapes are shuffled (seeded).
    """
    rng = random.Random(seed)
    pools = []
    for shape in SQLITE if dialect == "sqlite" else SERVER:
        texts = _shapes(shape, dialect)
        rng.shuffle(texts)
        pools.append(texts)
    texts = [t for group in itertools.zip_longest(*pools) for t in group if t][:n]
    if len(texts) < n:
        raise ValueError(f"only {len(texts)} distinct statement shapes for {dialect}; asked for {n}")
    statements = []
    for text in texts:
        calls, mean = rng.randint(10, 2000), round(rng.uniform(0.5, 50.0), 3)
        statements.append(
            Statement(Statement.digest_of(text), text, calls, calls * mean, mean, example=text, source="synthetic")
        )
    return statements
