"""Statement text normalized for grouping: literals → ``?``, one shape per statement whatever its values.

Used wherever dbopt aggregates concrete statements itself (the SQLite query log, the MySQL slow log):
``WHERE a = 5`` and ``WHERE a = -7`` are the same statement, and so are IN lists and multi-row
VALUES of any length.
"""

from __future__ import annotations

import re

from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

LITERALS = {
    TokenType.NUMBER,
    TokenType.STRING,
    TokenType.HEX_STRING,
    TokenType.BIT_STRING,
    TokenType.NATIONAL_STRING,
    TokenType.BYTE_STRING,
    TokenType.RAW_STRING,
}
# After these a "-" is a sign, not a subtraction: "a = -5" and "a = 5" are the same statement.
_SIGN_CONTEXT = {
    TokenType.EQ, TokenType.NEQ, TokenType.LT, TokenType.LTE, TokenType.GT, TokenType.GTE, TokenType.L_PAREN,
    TokenType.COMMA, TokenType.AND, TokenType.OR, TokenType.NOT, TokenType.BETWEEN, TokenType.IN,
    TokenType.SELECT, TokenType.WHERE, TokenType.LIMIT, TokenType.OFFSET,
}  # fmt: skip
_VALUES_ROWS = re.compile(r"\bVALUES\s*(\([?,\s]*\))(?:\s*,\s*\([?,\s]*\))+", re.IGNORECASE)


def tokenize(sql: str, dialect: str) -> list[Token]:
    """sqlglot's tokens of ``sql`` in ``dialect`` (raises TokenError on text it cannot tokenize)."""
    return Dialect.get_or_raise(dialect).tokenize(sql)


def normalize(sql: str, dialect: str) -> str:
    """Literals → ``?``, IN lists and multi-row VALUES collapsed, comments and layout folded.

    Identifiers keep their quoting; numbered placeholders (``?3``) stay as they are; a MySQL charset
    introducer with its string (``_utf8mb4'x'``) is one literal. Text the tokenizer rejects (a
    truncated statement) only has its whitespace folded, so it still groups with its twins.
    """
    try:
        toks = tokenize(sql, dialect)
    except TokenError:
        return " ".join(sql.split())
    parts: list[str] = []  # normalized token texts
    value: list[bool] = []  # parts[i] is a literal or placeholder (for IN-list collapsing)
    introduced = False  # the previous token was an introducer, already written as "?"
    for i, tok in enumerate(toks):
        text = sql[tok.start : tok.end + 1]
        gap = i > 0 and tok.start > toks[i - 1].end + 1
        if tok.token_type in LITERALS:
            if introduced:
                introduced = False
            elif i > 0 and toks[i - 1].token_type == TokenType.PLACEHOLDER and not gap:
                parts[-1] += text  # "?3": a numbered placeholder, not a literal
            elif i > 1 and toks[i - 1].token_type == TokenType.DASH and toks[i - 2].token_type in _SIGN_CONTEXT:
                parts[-1], value[-1] = parts[-1].replace("-", "?"), True
            else:
                parts.append(" ?" if gap else "?")
                value.append(True)
            continue
        if tok.token_type == TokenType.INTRODUCER and i + 1 < len(toks) and toks[i + 1].token_type in LITERALS:
            parts.append(" ?" if gap else "?")
            value.append(True)
            introduced = True
            continue
        parts.append(" " + text if gap else text)
        value.append(tok.token_type == TokenType.PLACEHOLDER)
        if tok.token_type == TokenType.R_PAREN:
            _collapse_in_list(parts, value)
    return _VALUES_ROWS.sub(r"VALUES \1", "".join(parts).strip())


def _collapse_in_list(parts: list[str], value: list[bool]) -> None:
    """Turn a just-closed ``IN (?, ?, ?)`` into ``IN (?)`` so list length does not split statements."""
    i = len(parts) - 2  # before ")"
    n_values = 0
    while i >= 0 and value[i]:
        n_values += 1
        if i == 0 or parts[i - 1].strip() != ",":
            break
        i -= 2
    opening = i - 1
    if n_values < 2 or opening < 1 or parts[opening].strip() != "(" or parts[opening - 1].strip().upper() != "IN":
        return
    del parts[opening + 2 : -1], value[opening + 2 : -1]
