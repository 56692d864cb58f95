"""The public demo: schema, deterministic data and a replayable workload for all three engines.

Files live in include/demo (schema_*.sql, data_*.sql, workload.yaml). Typical use::

    generate("postgresql://postgres@127.0.0.1/demo", scale=0.01)
    replay("postgresql://postgres@127.0.0.1/demo", statements=500, scale=0.01)
    concrete_queries(None, 5, dialect="postgres")  # benchmark statements with real values

CLI: ``python -m dbopt.demo_data generate URL --scale S`` and ``replay URL --statements N``.

This package plays the application, not dbopt: it talks to each driver itself (untagged, as an
application does), so its ``dialect ==`` branches are the demo's own SQL and drivers, outside the
``Target`` abstraction on purpose.
"""

from __future__ import annotations

from dbopt.demo_data.errors import DemoDataError
from dbopt.demo_data.generate import GenerationResult, demo_tables, generate, generate_sqlite
from dbopt.demo_data.replay import ReplayStats, concrete_queries, query_log_path, replay
from dbopt.demo_data.sizes import sizes
from dbopt.demo_data.workload import DEFAULT_WORKLOAD, Query, Workload, load_workload

__all__ = [
    "DEFAULT_WORKLOAD",
    "DemoDataError",
    "GenerationResult",
    "Query",
    "ReplayStats",
    "Workload",
    "concrete_queries",
    "demo_tables",
    "generate",
    "generate_sqlite",
    "load_workload",
    "query_log_path",
    "replay",
    "sizes",
]
