"""Task-log lines a person reads: one line per decision, and progress of long work every few seconds.

Plain data in, strings out (the Airflow tasks and the CLI log them); no Airflow import.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TextIO


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1g}"


def decision_lines(decision: dict[str, Any]) -> list[str]:
    """``KEEP   idx on t: q1 p95 12.1→0.4 ms, p=3e-06`` — one line per judged index."""
    results = {q["name"]: q["result"] for q in (decision.get("comparison") or {}).get("queries", [])}
    lines = []
    for d in decision.get("indexes", []):
        figures = [
            f"{q} p95 {r['before']['p95_ms']:.1f}→{r['after']['p95_ms']:.1f} ms, p={_p(r.get('p_value'))}"
            for q in d.get("verdicts", {})
            if (r := results.get(q))
        ]
        head = f"{'KEEP  ' if d['keep'] else 'REVERT'} {d['index']} on {d['table']}"
        lines.append(f"{head}: {'; '.join(figures) or 'no measured query'} — {d['reason']}")
    return lines or ["no index was built: nothing to keep or revert"]


class Ticker:
    """Calls ``probe()`` every ``every_s`` seconds in a thread while the ``with`` block runs and hands
    each non-empty answer, prefixed with the elapsed time, to ``emit`` (a logger or a progress bar)."""

    def __init__(self, probe: Callable[[], str | None], emit: Callable[[str], None], every_s: float = 5) -> None:
        self.probe, self.emit, self.every_s = probe, emit, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.every_s):
            try:
                status = self.probe()
            except Exception as err:  # progress is informative only: never fail the work it watches
                status = f"(progress unavailable: {err})"
            if status:
                self.emit(f"{status}; {time.monotonic() - started:.0f} s elapsed")

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every_s + 5)


def index_build_probe(url: str) -> Callable[[], str | None]:
    """A probe of the index build running in the database of ``url`` (its own connection):
    PostgreSQL ``pg_stat_progress_create_index``, MariaDB/MySQL the ALTER's stage progress."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        return lambda: None  # SQLite reports no build progress
    if backend.startswith("postgres"):
        engine = create_engine(u.set(drivername="postgresql+psycopg"), pool_size=1)
        query = text(
            "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total FROM pg_stat_progress_create_index "
            "WHERE datname = current_database()"
        )
    else:
        engine = create_engine(u.set(drivername="mysql+pymysql"), pool_size=1)
        query = text(
            "SELECT STAGE, MAX_STAGE, PROGRESS, 0, 0 FROM information_schema.PROCESSLIST "
            "WHERE DB = DATABASE() AND COMMAND = 'Query' AND INFO LIKE 'ALTER TABLE%'"
        )

    def probe() -> str | None:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        return "; ".join(_build_status(backend, *row) for row in rows) or None

    return probe


def _build_status(backend: str, phase: Any, done: Any, total: Any, tuples_done: Any, tuples_total: Any) -> str:
    if backend.startswith("postgres"):
        blocks = f"blocks {done}/{total} ({100 * done / total:.0f}%)" if total else "blocks -"
        tuples = f", tuples {tuples_done}/{tuples_total}" if tuples_total else ""
        return f"index build: {phase}, {blocks}{tuples}"
    return f"index build: stage {phase}/{done}, {float(total or 0):.0f}% of this stage"


class Counter:
    """Latest ``done/total`` of a counted job (the benchmark's runs): ``update`` is its progress
    callback, ``status`` the probe a :class:`Ticker` logs."""

    def __init__(self, what: str) -> None:
        self.what, self.done, self.total = what, 0, 0

    def update(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def status(self) -> str | None:
        if not self.total:
            return None
        return f"{self.what}: {self.done}/{self.total} runs ({100 * self.done / self.total:.0f}%)"


def terminal_bar(what: str, stream: TextIO) -> Callable[[int, int], None] | None:
    """A progress bar on ``stream`` when it is a terminal (None otherwise: logs and pipes stay clean)."""
    if not stream.isatty():
        return None

    def draw(done: int, total: int) -> None:
        filled = 30 * done // max(total, 1)
        stream.write(f"\r{what} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return draw
