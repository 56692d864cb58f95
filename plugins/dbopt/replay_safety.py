"""Which statements dbopt may replay to measure them: a single plain SELECT and nothing that acts.

The targets replay inside a read-only transaction that is always rolled back (see ``Target.timed``);
that stops writes to tables, but not what a read-only transaction still allows: sleeping, taking
locks, ending other sessions, changing settings, advancing sequences (MariaDB), writing files
(``INTO OUTFILE``), calling a function that reaches outside the transaction (dblink). So a statement
is parsed first (sqlglot, in the target's dialect) and refused, with the reason, unless it is one
SELECT (or WITH … SELECT, or a UNION of them) that calls only functions known to be read-only:
sqlglot's typed built-ins, the dialect's own read-only built-ins listed here, and the user functions
a plan names in ``benchmark.safe_functions``. Plain data in, plain data out: no database, no Airflow.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

# Functions that act even in a read-only transaction; ``*`` ends a prefix. Never replayable, not even
# when a plan lists them as safe.
DENIED: dict[str, str] = {
    "nextval": "advances a sequence",
    "setval": "sets a sequence",
    "lastval": "reads this session's sequence state, not the application's data",
    "set_config": "changes a server setting",
    "pg_terminate_backend": "terminates another session",
    "pg_cancel_backend": "cancels another session's query",
    "pg_sleep*": "sleeps",
    "sleep": "sleeps",
    "benchmark": "burns CPU on purpose",
    "pg_advisory_*": "takes or releases an advisory lock",
    "pg_try_advisory_*": "takes an advisory lock",
    "get_lock": "takes a named lock",
    "release_lock": "releases a named lock",
    "release_all_locks": "releases named locks",
    "lo_*": "reads or writes a large object or a server file",
    "dblink*": "runs SQL on another connection, outside the read-only transaction",
    "load_file": "reads a file on the server",
    "pg_read_file": "reads a file on the server",
    "pg_read_binary_file": "reads a file on the server",
    "pg_ls_dir": "lists a directory on the server",
    "pg_stat_file": "reads file metadata on the server",
    "load_extension": "loads native code",
    "pg_reload_conf": "reloads the server configuration",
    "pg_rotate_logfile": "rotates the server log",
    "pg_switch_wal": "switches the WAL file",
    "pg_notify": "sends a notification",
    "pg_logical_emit_message": "writes to the WAL",
    "txid_current": "assigns a transaction id",
    "pg_current_xact_id": "assigns a transaction id",
    "pg_stat_reset*": "resets statistics",
    "pg_stat_statements_reset": "resets statistics",
    "pg_qualstats_reset": "resets statistics",
    "master_pos_wait": "waits for replication",
    "master_gtid_wait": "waits for replication",
}

# Read-only built-ins that sqlglot does not model as typed functions (it parses them as "anonymous"
# calls, like any user function). Lower case.
_COMMON = """
    row_number rank dense_rank ntile lag lead first_value last_value nth_value percent_rank cume_dist
    nullif concat_ws replace reverse lpad rpad trim ltrim rtrim char_length character_length
    octet_length mod sign floor ceil ceiling power sqrt exp ln log log10 pi degrees radians sin cos tan
    left right position repeat md5 hex lower upper min max avg sum count coalesce greatest least abs
    round trunc truncate length substr substring instr now current_date current_time current_timestamp
    date time
"""
_POSTGRES = """
    age date_part date_trunc to_char to_date to_timestamp to_number make_date make_interval justify_days
    justify_hours clock_timestamp statement_timestamp transaction_timestamp localtime localtimestamp
    split_part btrim initcap ascii chr format quote_ident quote_literal regexp_replace regexp_match
    regexp_matches regexp_split_to_array string_to_array array_to_string array_length array_position
    array_remove array_append array_cat cardinality unnest generate_series width_bucket
    json_build_object jsonb_build_object json_build_array jsonb_build_array json_agg jsonb_agg
    json_object_agg jsonb_object_agg jsonb_array_length json_array_length jsonb_extract_path
    jsonb_extract_path_text json_extract_path json_extract_path_text jsonb_typeof json_typeof jsonb_each
    jsonb_each_text jsonb_array_elements jsonb_array_elements_text to_json to_jsonb row_to_json bool_and
    bool_or every bit_and bit_or percentile_cont percentile_disc mode stddev stddev_pop stddev_samp
    variance var_pop var_samp corr covar_pop covar_samp num_nonnulls num_nulls pg_size_pretty
    current_setting current_database current_schema version gen_random_uuid random isfinite overlaps
    daterange tstzrange tsrange int4range int8range numrange lower_inc upper_inc isempty to_tsvector
    to_tsquery plainto_tsquery websearch_to_tsquery ts_rank similarity word_similarity
"""
_MYSQL = """
    curdate curtime sysdate utc_timestamp utc_date unix_timestamp from_unixtime date_format str_to_date
    datediff timestampdiff timestampadd adddate subdate date_add date_sub dayofweek dayofmonth dayofyear
    weekday week yearweek year month day hour minute second last_day makedate maketime monthname dayname
    quarter to_days from_days if ifnull field find_in_set elt locate mid space format soundex
    group_concat json_extract json_unquote json_contains json_length json_keys json_object json_array
    json_value json_arrayagg json_objectagg bit_count crc32 sha1 sha2 conv bin oct uuid rand database
    schema charset collation std stddev variance bit_and bit_or bit_xor inet_aton inet_ntoa
    regexp_replace regexp_substr regexp_instr match against
"""
_SQLITE = """
    datetime julianday strftime unixepoch ifnull iif printf format quote typeof unicode char glob like
    likelihood likely unlikely zeroblob random randomblob total group_concat string_agg json
    json_extract json_array json_object json_array_length json_type json_valid json_group_array
    json_group_object json_each json_tree soundex sqlite_version
"""
SAFE_BUILTINS: dict[str, frozenset[str]] = {
    dialect: frozenset((_COMMON + names).split())
    for dialect, names in (("postgres", _POSTGRES), ("mysql", _MYSQL), ("sqlite", _SQLITE))
}
_NOT_SELECT = "only a single SELECT (or WITH … SELECT) is replayed"


class _CommandFallback(logging.Filter):
    """sqlglot warns when it keeps a statement unparsed (CALL, DO, EXPLAIN ANALYZE): here that is a refusal."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_CommandFallback())


def denied_reason(name: str) -> str | None:
    """Why a function may never be replayed, or None."""
    n = name.lower()
    for key, why in DENIED.items():
        if n == key or (key.endswith("*") and n.startswith(key[:-1])):
            return why
    return None


def _sqlglot_dialect(dialect: str) -> str:
    return {"postgres": "postgres", "mysql": "mysql", "sqlite": "sqlite"}.get(dialect, dialect)


def _token_refusal(sql: str, dialect: str) -> str | None:
    """What the parser may not represent: INTO OUTFILE/DUMPFILE (MySQL) fails to parse."""
    try:
        tokens = sqlglot.tokenize(sql, read=_sqlglot_dialect(dialect))
    except TokenError as err:
        return f"cannot read the statement: {str(err).splitlines()[0]}"
    for before, tok in itertools.pairwise(tokens):
        if before.token_type == TokenType.INTO and tok.text.upper() in ("OUTFILE", "DUMPFILE"):
            return f"INTO {tok.text.upper()} writes a file on the database server"
    return None


def _statement_kind(tree: exp.Expression) -> str:
    return tree.key.upper() if not isinstance(tree, exp.Command) else str(tree.this).upper()


def _node_refusal(node: exp.Expression) -> str | None:
    if isinstance(node, exp.DML | exp.DDL | exp.TruncateTable):
        return f"data-modifying or DDL statement inside the query ({node.key.upper()})"
    if isinstance(node, exp.Command | exp.Set):
        return f"{_statement_kind(node)} is not a query"
    if isinstance(node, exp.Into):
        return "SELECT … INTO creates a table or assigns variables"
    if isinstance(node, exp.Lock):
        return "FOR UPDATE / FOR SHARE / LOCK IN SHARE MODE takes row locks"
    return None


def _function_refusal(func: exp.Func, builtins: frozenset[str], safe: set[str]) -> str | None:
    if not isinstance(func, exp.Anonymous):
        return None  # sqlglot's typed built-ins are plain computations
    if func.find_ancestor(exp.Hint) is not None:
        return None  # optimizer hints (/*+ MAX_EXECUTION_TIME(…) */) are not calls
    name = func.name.lower()
    if why := denied_reason(name):
        return f"calls {name}(), which {why}"
    if name in builtins or name in safe:
        return None
    return (
        f"calls {name}(), which is not a known read-only built-in: a user function may write, lock or wait; "
        "if it only reads, list it in the plan's benchmark.safe_functions"
    )


def refusal(sql: str, dialect: str, safe_functions: Iterable[str] = ()) -> str | None:
    """Why ``sql`` must not be replayed, or None when it is one read-only SELECT."""
    if why := _token_refusal(sql, dialect):
        return why
    try:
        trees = [t for t in sqlglot.parse(sql, read=_sqlglot_dialect(dialect)) if t is not None]
    except ParseError as err:
        return f"cannot parse it as {dialect} SQL: {str(err).splitlines()[0]}"
    if not trees:
        return "empty statement"
    if len(trees) > 1:
        return f"several statements in one string ({', '.join(_statement_kind(t) for t in trees)})"
    tree = trees[0]
    if not isinstance(tree, exp.Query):
        return f"{_statement_kind(tree)}: {_NOT_SELECT}"
    builtins = SAFE_BUILTINS.get(dialect, frozenset(_COMMON.split()))
    safe = {s.lower() for s in safe_functions}
    for node in tree.walk():
        why = _node_refusal(node)
        if why is None and isinstance(node, exp.Func):
            why = _function_refusal(node, builtins, safe)
        if why:
            return why
    return None


def split_queries(text: str, dialect: str) -> list[str]:
    """Statements of a .sql file: cut at top-level ';' only (never inside a string, comment or $$ body)."""
    try:
        tokens = sqlglot.tokenize(text, read=_sqlglot_dialect(dialect))
    except TokenError as err:
        raise ValueError(f"cannot read the SQL: {str(err).splitlines()[0]}") from None
    parts, start = [], 0
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            parts.append(text[start : tok.start])
            start = tok.end + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def screen(queries: Sequence[dict[str, Any]], dialect: str, safe_functions: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The benchmark queries, each refused one marked ``refused: <reason>`` (every variant is checked)."""
    safe = list(safe_functions)
    out = []
    for q in queries:
        reasons = [r for r in (refusal(s, dialect, safe) for s in q["sql"]) if r]
        out.append(q | {"refused": reasons[0]} if reasons else q)
    return out


def measurable(queries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [q for q in queries if not q.get("refused")]


def refused(queries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": q["name"], "sql": q["sql"], "reason": q["refused"]} for q in queries if q.get("refused")]
