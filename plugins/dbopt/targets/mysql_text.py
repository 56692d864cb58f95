"""MySQL statement text: normalize literals to ``?``, bind ``?`` back for EXPLAIN, tell workload from admin.

Shared by the performance_schema workload (``mysql.py``) and the slow-log parser (``slowlog.py``) so
both agree on what a workload statement is and how its normalized text looks.
"""

from __future__ import annotations

import re

from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

from dbopt.targets import sqltext

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
    """MySQL statement text with its literals folded to ``?`` (``dbopt.targets.sqltext``)."""
    return sqltext.normalize(sql, "mysql")


def bind_placeholders(query: str) -> str:
    """Replace each ``?`` (and a digest's ``(...)`` list) with a neutral literal so EXPLAIN accepts it.

    The literal is the string ``'1'``, not the number 1: MySQL converts a string constant to the
    column's type, while a number compared with a VARCHAR column converts the column and hides its
    index. LIMIT/OFFSET need a plain number. The plan of bound text is an estimate for "some value";
    explain the statement's concrete example where one exists.
    """
    try:
        tokens = sqltext.tokenize(query, "mysql")
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
