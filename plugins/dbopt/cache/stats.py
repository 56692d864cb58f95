"""Cache hit ratio from Redis ``INFO stats``: deltas of ``keyspace_hits`` / ``keyspace_misses``.

The counters are server-wide and only grow (a restart or ``CONFIG RESETSTAT`` zeroes them), so the
ratio over a window is the hits added over the lookups added between two readings. Reading INFO is
not a key lookup: measuring does not move the figure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from dbopt.targets.base import Data


@dataclass(frozen=True)
class KeyspaceReading(Data):
    t: float  # unix seconds
    hits: int
    misses: int


def read_stats(client: Any) -> KeyspaceReading:
    """One reading from a redis-py client."""
    info = client.info("stats")
    return KeyspaceReading(time.time(), int(info["keyspace_hits"]), int(info["keyspace_misses"]))


def deltas(before: KeyspaceReading, after: KeyspaceReading) -> tuple[int, int]:
    """(hits, misses) added between two readings; counters that went down were reset in between."""
    if after.hits < before.hits or after.misses < before.misses:
        return after.hits, after.misses
    return after.hits - before.hits, after.misses - before.misses


def hit_ratio(before: KeyspaceReading, after: KeyspaceReading) -> float | None:
    """Hits / lookups between the readings; None when nothing was looked up (0/0 is not a ratio)."""
    hits, misses = deltas(before, after)
    return hits / (hits + misses) if hits + misses else None
