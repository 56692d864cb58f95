"""Warm the cache: run hot read-only statements with concrete values, write their rows with a TTL.

Statements go through the target's read-only replay (``Target.replay``: a rolled-back read-only
transaction, one statement), never a connection of our own, and only statements the replay screen
(``dbopt.replay_safety``) accepts are run — the same rules as the benchmark's. Results are JSON
(dates and decimals as text) under ``key_template`` with ``SET … EX ttl``, sent in pipelined batches of
``batch_size`` without MULTI (a batch is many independent writes, not a transaction). A result larger
than ``max_value_bytes`` is skipped, not truncated. Items, bytes and seconds are recorded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from string import Formatter
from typing import Any

from dbopt.targets.base import Data, Statement, Target

log = logging.getLogger(__name__)

KEY_FIELDS = frozenset({"plan", "target", "name", "digest"})
DEFAULT_KEY_TEMPLATE = "dbopt:{plan}:{name}:{digest}"


@dataclass(frozen=True)
class WarmItem(Data):
    name: str
    sql: str  # concrete statement with real values
    calls: int | None = None  # from the workload, when chosen from it


@dataclass(frozen=True)
class WarmedKey(Data):
    key: str
    name: str
    rows: int
    bytes: int
    query_ms: float


@dataclass(frozen=True)
class Skipped(Data):
    name: str
    reason: str


@dataclass(frozen=True)
class WarmResult(Data):
    items: int  # keys written (or that would be, in a dry run)
    bytes: int  # value bytes written
    seconds: float  # wall time, queries and writes
    query_seconds: float
    write_seconds: float
    batches: int
    ttl_s: int
    dry_run: bool
    keys: tuple[WarmedKey, ...] = ()
    skipped: tuple[Skipped, ...] = field(default_factory=tuple)


def key_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(template) if name is not None}


def check_key_template(template: str) -> str:
    """``ValueError`` naming the unknown placeholders and the allowed ones."""
    try:
        unknown = key_fields(template) - KEY_FIELDS
    except ValueError as err:
        raise ValueError(
            f"key_template {template!r} is not a format string ({err}); write e.g. {DEFAULT_KEY_TEMPLATE!r}"
        ) from None
    if unknown:
        raise ValueError(f"key_template uses {sorted(unknown)}; allowed placeholders: {sorted(KEY_FIELDS)}")
    if "digest" not in key_fields(template):
        raise ValueError("key_template needs {digest}: without it two variants of one statement share a key")
    return template


def refusal(sql: str, dialect: str, safe_functions: Iterable[str] = ()) -> str | None:
    """Why ``sql`` may not be run to warm the cache (None: one read-only SELECT), as for the benchmark."""
    from dbopt import replay_safety  # here: sqlglot is a slow import, and DAG files import this module

    return replay_safety.refusal(sql, dialect, safe_functions)


def hot_statements(
    statements: Sequence[Statement], top_n: int, dialect: str, safe_functions: Iterable[str] = ()
) -> list[WarmItem]:
    """The ``top_n`` most called read statements that carry a concrete example."""
    reads = [s for s in statements if s.example and refusal(s.example, dialect, safe_functions) is None]
    reads.sort(key=lambda s: (-s.calls, s.digest))
    return [WarmItem(f"q{s.digest[:8]}", s.example, s.calls) for s in reads[:top_n] if s.example]


def cache_key(template: str, item: WarmItem, *, plan: str, target: str) -> str:
    digest = hashlib.sha1(" ".join(item.sql.split()).encode()).hexdigest()[:16]
    return template.format(plan=plan, target=target, name=item.name, digest=digest)


def encode_rows(rows: Sequence[tuple]) -> bytes:
    return json.dumps([list(r) for r in rows], default=str, separators=(",", ":")).encode()


def warm(
    target: Target,
    client: Any,
    items: Sequence[WarmItem],
    *,
    plan: str,
    target_name: str,
    key_template: str = DEFAULT_KEY_TEMPLATE,
    ttl_s: int = 14400,
    batch_size: int = 100,
    max_value_bytes: int = 1 << 20,
    safe_functions: Iterable[str] = (),
    dry_run: bool = False,
) -> WarmResult:
    """Run each item, write its rows under its key with ``ttl_s``; a dry run queries nothing, writes nothing."""
    started = time.perf_counter()
    query_s = write_s = 0.0
    warmed: list[WarmedKey] = []
    skipped: list[Skipped] = []
    batches = 0
    pipe = None if dry_run else client.pipeline(transaction=False)
    pending = 0
    for item in items:
        key = cache_key(key_template, item, plan=plan, target=target_name)
        if why := refusal(item.sql, target.dialect, safe_functions):
            skipped.append(Skipped(item.name, f"not run: {why}; only one read-only SELECT is warmed"))
            continue
        if dry_run:
            log.info("[dry run] would run %s and SET %s EX %d", item.name, key, ttl_s)
            warmed.append(WarmedKey(key, item.name, 0, 0, 0.0))
            continue
        t0 = time.perf_counter()
        try:
            rows, _ = target.replay(item.sql)
        except Exception as err:  # one failing statement must not stop the others; it is reported
            skipped.append(Skipped(item.name, f"query failed: {type(err).__name__}: {str(err)[:160]}"))
            continue
        query_ms = (time.perf_counter() - t0) * 1000
        query_s += query_ms / 1000
        value = encode_rows(rows)
        if len(value) > max_value_bytes:
            skipped.append(Skipped(item.name, f"result is {len(value)} bytes, over max_value_bytes {max_value_bytes}"))
            continue
        pipe.set(key, value, ex=ttl_s)  # type: ignore[union-attr]
        warmed.append(WarmedKey(key, item.name, len(rows), len(value), round(query_ms, 3)))
        pending += 1
        if pending == batch_size:
            write_s += _flush(pipe)
            batches, pending = batches + 1, 0
    if pending:
        write_s += _flush(pipe)
        batches += 1
    result = WarmResult(
        items=len(warmed),
        bytes=sum(k.bytes for k in warmed),
        seconds=round(time.perf_counter() - started, 4),
        query_seconds=round(query_s, 4),
        write_seconds=round(write_s, 4),
        batches=batches,
        ttl_s=ttl_s,
        dry_run=dry_run,
        keys=tuple(warmed),
        skipped=tuple(skipped),
    )
    log.info(
        "%swarmed %d keys, %d bytes in %.3f s (%d batches); skipped %d",
        "[dry run] " if dry_run else "",
        result.items,
        result.bytes,
        result.seconds,
        batches,
        len(skipped),
    )
    return result


def _flush(pipe: Any) -> float:
    t0 = time.perf_counter()
    pipe.execute()
    return time.perf_counter() - t0
