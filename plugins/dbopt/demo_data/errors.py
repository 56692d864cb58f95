"""The one error the demo data package raises for bad input or a database that cannot take the demo."""

from __future__ import annotations


class DemoDataError(Exception):
    """Bad demo input (scale, workload file, database) with what to change; nothing was modified."""
