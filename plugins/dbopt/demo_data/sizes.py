"""Row counts of the demo data at a given scale: one table of sizes for the generator and the workload.

The workload's parameter ranges name these sizes (``int: [1, users]``), so the values it draws exist
in data generated at the same scale.
"""

from __future__ import annotations

import math
from pathlib import Path

from dbopt.demo_data.errors import DemoDataError

# The SQL and YAML files of the demo (include/demo next to plugins/).
DEMO_DIR = Path(__file__).resolve().parents[3] / "include" / "demo"

# Which demo data and workload family a dialect gets.
FAMILY_OF_DIALECT = {"postgres": "server", "mysql": "server", "sqlite": "sqlite"}

# name -> (count at scale 1.0, floor at small scales). Equal numbers mean a fixed size.
SERVER_SIZES: dict[str, tuple[int, int]] = {
    "regions": (20, 20),  # the tiny lookup table (a trap: a full scan of 20 rows needs no index)
    "personas": (10_000, 50),
    "users": (50_000, 100),  # distinct user ids, not a table
    "entities": (100_000, 100),  # distinct audit_log.entity_id values, not a table
    "user_preferences": (200_000, 200),
    "sessions": (1_000_000, 1_000),
    "analytics": (1_000_000, 1_000),
    "audit_log": (1_000_000, 1_000),
}

SQLITE_SIZES: dict[str, tuple[int, int]] = {
    "companies": (5, 5),  # the tiny lookup table
    "teams": (24, 2),
    "users": (300, 10),
    "billing_projects": (30, 3),
    "worklogs": (200_000, 500),
    "factorial_leaves": (6_000, 50),
}

ISSUE_TYPES = 4  # billing_rates holds one row per (project, user, issue type)
MAX_SCALE = 100.0


def check_scale(scale: float) -> float:
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise DemoDataError(f"scale must be a number, got {scale!r}")
    if not 0 < scale <= MAX_SCALE:
        raise DemoDataError(f"scale must be > 0 and <= {MAX_SCALE:g} (1.0 = a million rows per big table), got {scale}")
    return float(scale)


def sizes(family: str, scale: float = 1.0) -> dict[str, int]:
    """Row counts for the ``server`` (PostgreSQL/MariaDB) or ``sqlite`` demo data at ``scale``."""
    scale = check_scale(scale)
    table = {"server": SERVER_SIZES, "sqlite": SQLITE_SIZES}[family]
    out = {name: max(floor, round(base * scale)) for name, (base, floor) in table.items()}
    if family == "sqlite":
        out["billing_rates"] = out["billing_projects"] * out["users"] * ISSUE_TYPES
        out["hash_rows"] = max(out.values())  # data_sqlite.sql hashes row numbers 1..hash_rows once
    return out
