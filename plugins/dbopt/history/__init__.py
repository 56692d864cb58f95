"""Run history: every run, step attempt and scaling change of dbopt, append-only (SQLAlchemy 2)."""

from __future__ import annotations

from dbopt.history.migrations import HistorySchemaError
from dbopt.history.store import HISTORY_URL_ENV, HistoryError, HistoryStore, history_url

__all__ = ["HISTORY_URL_ENV", "HistoryError", "HistorySchemaError", "HistoryStore", "history_url"]
