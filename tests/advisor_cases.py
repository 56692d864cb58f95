"""Regression cases for the index advisor: a small schema, one statement each, the expected advice.

Each case is what the public advisors' test suites check (Dexter, supabase index_advisor,
pg_qualstats), rebuilt here in our own words and schema: the expected index (key columns, in
order), or no index with a fragment of the reason dbopt must give. ``engines`` says where a case
runs: engine-neutral cases run on PostgreSQL, MariaDB and SQLite; PostgreSQL-only ones use
PostgreSQL syntax or features (views read through, schemas, generic plans). ``bench/peers.py``
runs the same cases through the peers for the agreement table in bench/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass

ROWS = 100_000
ALL = ("postgres", "mysql", "sqlite")
PG = ("postgres",)

# Rows from a numbers source per dialect: {n} is the sequence column.
_NUMBERS = {
    "postgres": "SELECT {cols} FROM generate_series(1, {rows}) AS s(n)",
    "mysql": "SELECT {cols} FROM (SELECT seq AS n FROM seq_1_to_{rows}) s",
    "sqlite": "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows}) SELECT {cols} FROM s",
}
_CONCAT = {"postgres": "'title ' || n", "mysql": "CONCAT('title ', n)", "sqlite": "'title ' || n"}


def schema(dialect: str) -> list[str]:
    """Statements creating and loading the case schema (then analysed) on ``dialect``."""

    def fill(table: str, cols: str, rows: int) -> str:
        return f"INSERT INTO {table} " + _NUMBERS[dialect].format(cols=cols, rows=rows)

    text = "TEXT" if dialect == "postgres" else "VARCHAR(64)"
    out = [
        f"CREATE TABLE posts (id INT, blog_id INT, user_id INT, indexed INT, title {text}, status {text})",
        fill(
            "posts",
            f"n, n % 1000, n % 10, n, {_CONCAT[dialect]}, CASE WHEN n % 20 = 0 THEN 'archived' ELSE 'active' END",
            ROWS,
        ),
        "CREATE INDEX posts_indexed ON posts (indexed)",
        f"CREATE TABLE tiny (id INT PRIMARY KEY, code {text})",
        fill("tiny", "n, " + _CONCAT[dialect], 50),
        "CREATE TABLE comments (id INT PRIMARY KEY, post_id INT, author_id INT)",
        fill("comments", "n, n % 50000 + 1, n % 5000", ROWS),
        f"CREATE TABLE accounts (id INT PRIMARY KEY, email VARCHAR(64) NOT NULL, plan {text}, logins INT)",
        fill("accounts", "n, " + _CONCAT[dialect] + ", 'free', n % 100", ROWS // 2),
        "CREATE UNIQUE INDEX accounts_email ON accounts (email)",
    ]
    if dialect == "postgres":
        out += [
            "CREATE VIEW posts_view AS SELECT id AS view_id, blog_id FROM posts",
            'CREATE SCHEMA "Bar"',
            'CREATE TABLE "Bar"."Foo" ("Id" INT)',
            'INSERT INTO "Bar"."Foo" SELECT n FROM generate_series(1, 100000) n',
            "ANALYZE",
        ]
    elif dialect == "mysql":
        out += [f"ANALYZE TABLE {t}" for t in ("posts", "tiny", "comments", "accounts")]
    else:
        out.append("ANALYZE")
    return out


@dataclass(frozen=True)
class Case:
    name: str
    query: str  # PostgreSQL spelling; placeholders $n become ? elsewhere
    index: tuple[str, ...] | None  # expected key columns of the one index, or None
    table: str = "posts"
    reason: str = ""  # for no index: a fragment of the reason
    engines: tuple[str, ...] = ALL
    peer: str = ""  # which public suite has the case (for bench/README.md)


CASES = [
    Case("equality", "SELECT * FROM posts WHERE id = 1", ("id",), peer="dexter"),
    Case("no filter", "SELECT * FROM posts", None, reason="no column a btree index could use", peer="dexter"),
    Case("parameter", "SELECT * FROM posts WHERE id = $1", ("id",), peer="dexter"),
    Case("range", "SELECT * FROM posts WHERE id BETWEEN 10 AND 20", ("id",), peer="pg_qualstats"),
    Case("IN list", "SELECT * FROM posts WHERE id IN (1, 2, 3)", ("id",), peer="pg_qualstats"),
    Case("OR on one column", "SELECT * FROM posts WHERE id = 1 OR id = 2", ("id",), peer="pg_qualstats"),
    Case(
        "OR across columns",
        "SELECT * FROM posts WHERE id = 1 OR blog_id = 2",
        None,
        reason="no column a btree index could use",
        peer="pg_qualstats",
    ),
    Case("ORDER BY LIMIT", "SELECT * FROM posts ORDER BY user_id DESC LIMIT 10", ("user_id",), peer="dexter"),
    Case(
        "ORDER BY two columns LIMIT",
        "SELECT * FROM posts ORDER BY user_id, blog_id LIMIT 10",
        ("user_id", "blog_id"),
        peer="dexter",
    ),
    Case(
        "equality then sort",
        "SELECT * FROM posts WHERE user_id = 1 ORDER BY blog_id LIMIT 1000",
        ("user_id", "blog_id"),
        peer="dexter",
    ),
    Case(
        "two equalities",
        "SELECT * FROM posts WHERE blog_id = 7 AND user_id = 7",
        ("blog_id", "user_id"),
        peer="supabase",
    ),
    Case(
        "join",
        "SELECT c.id FROM comments c JOIN posts p ON p.id = c.post_id WHERE c.author_id = 5",
        ("author_id",),
        table="comments",
        peer="dexter",
    ),
    Case(
        "partial predicate (rare value)",
        "SELECT * FROM posts WHERE status = 'archived' AND blog_id = 40",
        ("blog_id", "status"),
        peer="pg_qualstats",
    ),
    Case(
        "expression",
        "SELECT * FROM posts WHERE lower(title) = 'title 5'",
        None,
        reason="function or expression",
        peer="dexter",
    ),
    Case("tiny table", "SELECT * FROM tiny WHERE code = 'title 5'", None, table="tiny", reason="table too small"),
    Case("unselective", "SELECT * FROM posts WHERE status = 'active'", None, reason="unselective", peer="pg_qualstats"),
    Case("LIKE prefix", "SELECT * FROM posts WHERE title LIKE 'title 123%'", ("title",), engines=("mysql",)),
    # PostgreSQL serves LIKE 'x%' from a plain btree only under the C collation (this server: C.UTF-8);
    # SQLite's LIKE is case-insensitive, so a plain index cannot serve it either
    Case(
        "LIKE prefix, case-insensitive LIKE",
        "SELECT * FROM posts WHERE title LIKE 'title 123%'",
        None,
        reason="the planner would not use it",
        engines=("sqlite",),
    ),
    Case(
        "LIKE prefix, non-C collation",
        "SELECT * FROM posts WHERE title LIKE 'title 123%'",
        None,
        reason="the planner uses none",
        engines=PG,
        peer="supabase",
    ),
    Case("LIKE suffix", "SELECT * FROM posts WHERE title LIKE '%123'", None, reason="leading wildcard"),
    Case("already indexed", "SELECT * FROM posts WHERE indexed = 1", None, reason="posts_indexed", peer="dexter"),
    Case(
        "led by the primary key",
        "SELECT id, plan FROM accounts WHERE id = 5 AND plan = 'free'",
        None,
        table="accounts",
        reason="led by the primary key",
    ),
    Case(
        "led by a unique key",
        "SELECT * FROM accounts WHERE email = 'title 5' AND logins = 5",
        None,
        table="accounts",
        reason="unique key accounts_email",
    ),
    Case(
        "UPDATE by primary key",
        "UPDATE accounts SET logins = logins + 1 WHERE id = 5",
        None,
        table="accounts",
        reason="write statement",
    ),
    Case("view", "SELECT * FROM posts_view WHERE view_id = 1", ("id",), engines=PG, peer="dexter"),
    Case(
        "CTE",
        "WITH cte AS (SELECT * FROM posts WHERE id = 1) SELECT * FROM cte",
        ("id",),
        engines=PG,
        peer="dexter",
    ),
    Case(
        "CTE filtered outside",
        "WITH cte AS (SELECT * FROM posts) SELECT * FROM cte WHERE id = 1",
        ("id",),
        engines=PG,
        peer="dexter",
    ),
    Case(
        "quoted schema", 'SELECT * FROM "Bar"."Foo" WHERE "Id" = 10000', ("Id",), "Bar.Foo", engines=PG, peer="dexter"
    ),
]
