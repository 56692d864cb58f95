"""MariaDB with primary-key UPDATEs in the workload: no index led by a key, and dbopt's set against a
hand-built one (bytes and read latency).

The UPDATEs (``… WHERE id = n``: single-row, served by the primary key) run after the replay, so
the performance_schema digests the advisor reads hold them with the reads. The hand-built set is
what a careful engineer would build for the demo reads: one index per read shape, no covering
columns, nothing led by a key.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from dbopt.demo_data.sizes import sizes
from dbopt.targets.base import IndexInfo, IndexSpec, Target

UPDATES = {
    "sessions": "UPDATE sessions SET status = 'idle', last_seen_at = NOW() WHERE id = {n}",
    "analytics": "UPDATE analytics SET duration_ms = duration_ms + 1 WHERE event_id = {n}",
    "user_preferences": "UPDATE user_preferences SET pref_value = 'dark' WHERE pref_id = {n}",
}

HAND_SET = [
    IndexSpec("sessions", ("session_id",), name="hand_sessions_session_id"),
    IndexSpec("analytics", ("user_id",), name="hand_analytics_user_id"),
    IndexSpec("analytics", ("event_type", "event_date"), name="hand_analytics_type_date"),
    IndexSpec("audit_log", ("action", "timestamp"), name="hand_audit_action_ts"),
    IndexSpec("audit_log", ("entity_id", "entity_type"), name="hand_audit_entity"),
    IndexSpec("user_preferences", ("user_id", "created_at"), name="hand_prefs_user_created"),
    IndexSpec("personas", ("intent", "tone", "pace"), name="hand_personas_itp"),
]


def run_key_updates(target: Target, scale: float, per_table: int, seed: int = 0) -> int:
    """``per_table`` single-row UPDATEs by primary key on each table of ``UPDATES``; returns how many ran."""
    rng = random.Random(seed)
    rows = sizes("server", scale)
    done = 0
    for table, text in UPDATES.items():
        for _ in range(per_table):
            target.execute(text.format(n=rng.randint(1, max(rows.get(table, 1), 1))))
            done += 1
    return done


def key_led(specs: Iterable[IndexSpec], existing: Iterable[IndexInfo]) -> list[str]:
    """Advised indexes whose leading columns are a primary or unique key's full column list."""
    keys = [(ix.table.lower(), {c.lower() for c in ix.columns}) for ix in existing if ix.primary or ix.unique]
    out = []
    for spec in specs:
        for table, cols in keys:
            lead = {c.lower() for c in spec.columns[: len(cols)]}
            if table == spec.table.lower() and lead == cols:
                out.append(f"{spec.table}({', '.join(spec.columns)})")
    return out


def build_hand_set(target: Target) -> None:
    for spec in HAND_SET:
        result = target.create_index(spec)
        if result.status not in ("created", "exists"):
            raise RuntimeError(f"hand-built index {spec.name}: {result.error}")
