"""Progress of a real index build, as the task log shows it: a CREATE INDEX CONCURRENTLY waiting for an
old snapshot is seen, with its phase, by the probe running on its own connection."""

from __future__ import annotations

import io
import os
import threading

import psycopg

from dbopt.tasklog import Ticker, index_build_probe


def test_a_waiting_postgres_index_build_is_reported(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE t AS SELECT g AS id, g % 97 AS k FROM generate_series(1, 20000) g")
    lines: list[str] = []
    with psycopg.connect(pg_url, autocommit=True) as blocker, psycopg.connect(pg_url, autocommit=True) as builder:
        blocker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        blocker.execute("SELECT count(*) FROM t")  # an old snapshot: the concurrent build waits for it
        build = threading.Thread(target=builder.execute, args=("CREATE INDEX CONCURRENTLY t_k ON t (k)",))
        with Ticker(index_build_probe(pg_url), lines.append, every_s=0.3):
            build.start()
            while not lines and build.is_alive():
                build.join(0.2)
            blocker.execute("ROLLBACK")
            build.join(60)
    assert not build.is_alive()
    assert lines, "no progress line while the build waited"
    assert lines[0].startswith("index build: waiting for "), lines[0]
    assert "s elapsed" in lines[0]


def test_benchmark_progress_counts_every_run_and_draws_a_bar_on_a_terminal(sqlite_demo):
    from dbopt.bench import BenchQuery, measure
    from dbopt.tasklog import Counter, terminal_bar

    seen = Counter("benchmark")
    master, slave = os.openpty()
    with open(slave, "w") as tty, io.StringIO() as pipe:
        assert terminal_bar("benchmark", pipe) is None  # not a terminal: no bar in logs or pipes
        bar = terminal_bar("benchmark", tty)

        def both(done: int, total: int) -> None:
            seen.update(done, total)
            bar(done, total)

        queries = [BenchQuery(name="count", sql=("SELECT count(*) FROM worklogs",))]
        measure(sqlite_demo, queries, iterations=3, warmup=1, rounds=2, progress=both)
    chunks = []  # one read may return part of what was drawn: read until the closed terminal says EIO
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    drawn = b"".join(chunks).decode()
    # at least 1 warm-up (more until the timings are stable: the total grows with them) + 2 rounds × 3
    done, total = (int(n) for n in seen.status().split()[1].split("/"))
    assert done == total >= 7 and seen.status().endswith("(100%)")
    assert drawn.rstrip().endswith(f"benchmark [{'#' * 30}] {total}/{total}")
