"""MySQL statement text: normalize literals to ``?``, bind ``?`` back for EXPLAIN, tell workload from admin.

Shared by the performance_schema workload (``mysql.py``) and the slow-log parser (``slowlog.py``) so
both agree on what a workload statement is and how its normalized text looks.
"""

from __future__ import annotations

import re

from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

_MYSQL = Dialect.get_or_raise("mysql")

_LITERALS = {
    TokenType.NUMBER,
    TokenType.STRING,
    TokenType.HEX_STRING,
    TokenType.BIT_STRING,
    TokenType.NATIONAL_STRING,
    TokenType.BYTE_STRING,
    TokenType.RAW_STRING,
    TokenType.PLACEHOLDER,
}
_IN_LIST = re.compile(r"\bIN\s*\(\s*\?(?:\s*,\s*\?)*\s*\)", re.IGNORECASE)
_VALUES_ROWS = re.compile(r"\bVALUES\s*(\([?,\s]*\))(?:\s*,\s*\([?,\s]*\))+", re.IGNORECASE)

# Leading noise before the first keyword: whitespace, comments, opening parentheses.
_LEADING = re.compile(r"^(?:\s+|/\*.*?\*/|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$)|\()+", re.DOTALL)
_DML = {"select", "insert", "update", "delete", "replace", "with"}
# Statements reading the server's own catalogs are monitoring, never the application's workload.
_CATALOG = re.compile(r"(?<![\w$])`?(?:performance_schema|information_schema|mysql|sys)`?\s*\.", re.IGNORECASE)


def is_workload_sql(text: str) -> bool:
    """True for application DML (SELECT/INSERT/UPDATE/DELETE/REPLACE/WITH) not reading server catalogs."""
    body = _LEADING.sub("", text)
    first = body.split(None, 1)[0].lower() if body.strip() else ""
    return first in _DML and not _CATALOG.search(body)


def normalize(sql: str) -> str:
    """Literals → ``?``, IN lists and multi-row VALUES collapse to one, comments and extra spaces go.

    Identifiers keep their original quoting. Text the tokenizer cannot read (a truncated statement)
    only has its whitespace collapsed, so it still groups with identical occurrences.
    """
    try:
        tokens = _MYSQL.tokenize(sql)
    except TokenError:
        return " ".join(sql.split())
    out: list[str] = []
    prev_end = -1
    skip_introducer = False
    for i, tok in enumerate(tokens):
        gap = bool(out) and tok.start > prev_end + 1
        prev_end = tok.end
        if skip_introducer:  # the string after _utf8mb4 was already emitted as "?"
            skip_introducer = False
            continue
        if tok.token_type in _LITERALS:
            text = "?"
        elif tok.token_type is TokenType.INTRODUCER and i + 1 < len(tokens) and tokens[i + 1].token_type in _LITERALS:
            text, skip_introducer = "?", True
        else:
            text = sql[tok.start : tok.end + 1]
        out.append(" " + text if gap else text)
    joined = "".join(out)
    return _VALUES_ROWS.sub(r"VALUES \1", _IN_LIST.sub("IN (?)", joined))


def bind_placeholders(query: str) -> str:
    """Replace each ``?`` (and a digest's ``(...)`` list) with a neutral literal so EXPLAIN accepts it.

    The literal is the string ``'1'``, not the number 1: MySQL converts a string constant to the
    column's type, while a number compared with a VARCHAR column converts the column and hides its
    index. LIMIT/OFFSET need a plain number. The plan of bound text is an estimate for "some value";
    explain the statement's concrete example where one exists.
    """
    try:
        tokens = _MYSQL.tokenize(query)
    except TokenError:
        return query
    pieces: list[str] = []
    pos = 0
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        kinds = [t.token_type for t in tokens[i : i + 5]]
        if kinds == [TokenType.L_PAREN, TokenType.DOT, TokenType.DOT, TokenType.DOT, TokenType.R_PAREN]:
            pieces += [query[pos : tok.start], "('1')"]
            pos, i = tokens[i + 4].end + 1, i + 5
            continue
        if tok.token_type is TokenType.PLACEHOLDER:
            pieces += [query[pos : tok.start], "1" if _in_limit(tokens, i) else "'1'"]
            pos = tok.end + 1
        i += 1
    pieces.append(query[pos:])
    return "".join(pieces)


def _in_limit(tokens: list[Token], i: int) -> bool:
    """True if tokens[i] is a LIMIT/OFFSET operand (``LIMIT ?``, ``LIMIT ?, ?``, ``OFFSET ?``)."""
    before = [t.token_type for t in tokens[max(0, i - 3) : i]]
    if before[-1:] in ([TokenType.LIMIT], [TokenType.OFFSET]):
        return True
    return before == [TokenType.LIMIT, TokenType.PLACEHOLDER, TokenType.COMMA]
