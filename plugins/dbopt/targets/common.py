"""Logic shared by the three targets: index redundancy, DDL retries, sampled column statistics."""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from dbopt.targets.base import IndexInfo, Target

T = TypeVar("T")


def is_local_address(address: str | None) -> bool:
    """A Unix socket (None/'localhost') or a loopback address: the server's files are on this machine."""
    if address in (None, "", "localhost"):
        return True
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 else address  # MySQL's "host:port"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _keys(ix: IndexInfo) -> tuple[tuple[str, bool], ...]:
    desc = ix.descending or (False,) * len(ix.columns)
    return tuple(zip((c.lower() for c in ix.columns), desc, strict=True))


def covers(wider: IndexInfo, narrower: IndexInfo) -> bool:
    """True if ``wider`` serves every lookup ``narrower`` serves: its keys start with narrower's keys.

    Partial and expression indexes are never judged (their predicate/expression matters), and a
    unique index is only covered by an identical one (uniqueness is a constraint, not a speed-up).
    """
    if wider.table.lower() != narrower.table.lower() or wider.name == narrower.name:
        return False
    if any(ix.partial or ix.expression or not ix.valid for ix in (wider, narrower)):
        return False
    wk, nk = _keys(wider), _keys(narrower)
    if len(nk) > len(wk) or wk[: len(nk)] != nk:
        return False
    if narrower.unique or narrower.primary:
        return wk == nk and (wider.unique or wider.primary)
    return set(c.lower() for c in narrower.include) <= set(c.lower() for c in wider.columns + wider.include)


def mark_redundant(indexes: Iterable[IndexInfo]) -> list[IndexInfo]:
    """Fill ``redundant_with`` where another index of the same table covers this one.

    For two identical indexes only the later name (alphabetically) is marked, so one always stays.
    """
    items = list(indexes)
    out = []
    for ix in items:
        if ix.redundant_with is not None:
            out.append(ix)
            continue
        # of two identical indexes, the one with the smaller name is kept
        by = sorted(o.name for o in items if covers(o, ix) and not (covers(ix, o) and o.name > ix.name))
        out.append(dataclasses.replace(ix, redundant_with=by[0]) if by else ix)
    return out


def with_retries(
    attempt: Callable[[int], T],
    retryable: tuple[type[BaseException], ...],
    retries: int,
    backoff_s: float = 0.5,
    on_failure: Callable[[BaseException], None] | None = None,
) -> tuple[T, int]:
    """Call ``attempt(n)`` until it succeeds or ``retries`` extra tries are used (exponential backoff).

    ``on_failure`` runs after every retryable failure (e.g. to drop an INVALID leftover). Returns the
    result and the number of attempts; re-raises the last error when all attempts failed.
    """
    n = 0
    while True:
        n += 1
        try:
            return attempt(n), n
        except retryable as err:
            if on_failure is not None:
                on_failure(err)
            if n > retries:
                raise
            time.sleep(backoff_s * 2 ** (n - 1))


def sampled_column_stats(
    target: Target, table: str, columns: Iterable[str], sample_rows: int = 20000
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Distinct-count and top-value frequency per column from a bounded sample of the table.

    For engines without per-column statistics (SQLite, MySQL without histograms). The distinct count
    of a sample under-estimates a large table's, so it is scaled only when the sample looked unique.
    """
    qt = target.quote(table)
    rows = target.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM {qt} LIMIT {int(sample_rows)}) s")[0][0]
    distinct: dict[str, float | None] = {}
    top: dict[str, float | None] = {}
    if not rows:
        return distinct, top
    for col in columns:
        qc = target.quote(col)
        sample = f"(SELECT {qc} AS v FROM {qt} LIMIT {int(sample_rows)}) s"
        n_distinct = target.execute(f"SELECT COUNT(DISTINCT v) FROM {sample}")[0][0]
        top_count = target.execute(f"SELECT COUNT(*) AS n FROM {sample} GROUP BY v ORDER BY n DESC LIMIT 1")
        top[col] = top_count[0][0] / rows
        distinct[col] = float(n_distinct)
    return distinct, top
