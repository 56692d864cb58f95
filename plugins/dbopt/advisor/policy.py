"""The advisor's knobs, with defaults that suit an OLTP workload."""

from __future__ import annotations

from dataclasses import dataclass

from dbopt.targets.base import Data


@dataclass(frozen=True)
class AdvisorPolicy(Data):
    """What the advisor may recommend.

    Defaults: 1 GiB of new indexes, 3 new per table, each index must cut the estimated cost of the
    queries it serves by 20%, no indexes on tables under 1000 rows, no leading column whose most
    common value matches more than half the rows.
    """

    storage_budget_bytes: int = 1 << 30
    max_indexes_per_table: int = 3  # new indexes per table (existing ones do not count)
    min_improvement: float = 0.2  # relative cost cut over the queries an index serves
    # Estimated time saved, as a share of the served statements' time: keeps marginal widenings out.
    min_time_saved: float = 0.02
    min_table_rows: int = 1000
    max_leading_top_frequency: float = 0.5
    allow_include: bool = True  # PostgreSQL INCLUDE columns for covering variants
    max_include_columns: int = 3  # covering variants only when this few extra columns are read
    # Covering variants never carry a column wider than this (average bytes per value, where the
    # engine knows it): long text would double an index for what one heap fetch per row costs.
    max_covering_width: float = 16.0
    # A covering variant replaces the index it widens only when its extra bytes save, per byte, at
    # least this share of what that index's own bytes save (estimated time per byte).
    covering_value_ratio: float = 0.5
    # The same for sort keys after the filtered ones (they spare the rows past a LIMIT). Lower than for
    # covering columns, which save at most a heap fetch per row: a sort key can cut a statement many
    # times over, and still costs its bytes where the filtered keys leave only a few rows per value.
    sort_value_ratio: float = 0.1
    # Two picks on one table become one index whose column order serves both sets of statements
    # ((created_at, room_id) for (created_at) + (room_id, created_at)) when it is smaller than the two
    # and keeps all but this share of the estimated time they save.
    merge_margin: float = 0.05
    max_key_columns: int = 5
    # Each statement's cheapest candidates (costed alone) that enter the workload-wide search, besides
    # its best one per byte. More means more what-if plans: 1 keeps a 200-statement workload well
    # under 10 s on SQLite, whose what-if plans sample statistics for every new key.
    candidates_per_statement: int = 1
    # Share of a write statement's time each new index on its table adds (index maintenance).
    write_penalty: float = 0.1
    max_recommendations: int = 20
    # Existing non-unique indexes with no recorded use are proposed for dropping.
    suggest_drops: bool = True

    def __post_init__(self) -> None:
        checks = {
            "storage_budget_bytes": self.storage_budget_bytes >= 0,
            "max_indexes_per_table": self.max_indexes_per_table >= 0,
            "min_improvement": 0.0 <= self.min_improvement < 1.0,
            "min_time_saved": 0.0 <= self.min_time_saved <= 1.0,
            "min_table_rows": self.min_table_rows >= 0,
            "max_leading_top_frequency": 0.0 < self.max_leading_top_frequency <= 1.0,
            "max_include_columns": self.max_include_columns >= 0,
            "max_covering_width": self.max_covering_width > 0,
            "covering_value_ratio": self.covering_value_ratio >= 0.0,
            "sort_value_ratio": self.sort_value_ratio >= 0.0,
            "merge_margin": 0.0 <= self.merge_margin < 1.0,
            "max_key_columns": self.max_key_columns >= 1,
            "candidates_per_statement": self.candidates_per_statement >= 1,
            "write_penalty": self.write_penalty >= 0.0,
            "max_recommendations": self.max_recommendations >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"AdvisorPolicy: invalid value for {', '.join(bad)} (see the field docs for ranges)")
