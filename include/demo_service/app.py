"""Demo HTTP service for canary tests: one endpoint backed by a database through a sized connection pool.

``GET /orders?customer=N`` counts a customer's orders through a SQLAlchemy QueuePool; when no
connection frees up within ``DB_POOL_TIMEOUT`` the request gets 503 (the failure a too-small pool
causes under load). ``GET /metrics`` is the Prometheus exposition, every series labelled with
``revision``, ``service`` and ``location``; ``GET /healthz`` answers 200. At start it creates and fills
its table when missing (``seed``), so a fresh database answers 200.

Environment: ``DATABASE_URL`` (required, e.g. sqlite:////tmp/demo.db), ``REVISION`` and ``SERVICE``
(default: ``K_REVISION`` / ``K_SERVICE``, which Cloud Run and dbopt's local data plane set, else "dev" /
"demo"), ``LOCATION`` (the region, default "local"), ``DB_POOL_SIZE`` (10), ``DB_POOL_TIMEOUT`` seconds (30),
``DB_QUERY_DELAY_MS`` (0: extra time each request holds its connection, standing in for a slower
query), ``HOST`` (127.0.0.1), ``PORT`` (0 = any free port), ``REDIS_URL`` (unset: no cache; set: read
through Redis, keys as dbopt's cache warming writes them — ``CACHE_KEY_TEMPLATE``, default
``demo:{name}:{digest}``, name ``orders`` — kept ``CACHE_TTL_S`` (300) seconds; ``cache_lookups_total``
counts hits and misses). The first line on stdout is ``listening on http://HOST:PORT``.

Run: ``DATABASE_URL=sqlite:////tmp/demo.db REVISION=r1 python include/demo_service/app.py``
(``python -m dbopt.cloud.dataplane`` runs one per Cloud Run stand-in revision.)
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy.pool import QueuePool

# Fine around tens of milliseconds, where pool waits show up; p95 interpolates inside a bucket.
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
CODE_CLASSES = ("2xx", "4xx", "5xx")
# On every series: which revision of which service in which region (canary rules select by them).
LABELS = ("revision", "service", "location")


@dataclass(frozen=True)
class Settings:
    database_url: str
    revision: str = "dev"
    service: str = "demo"
    location: str = "local"
    pool_size: int = 10
    pool_timeout_s: float = 30.0
    query_delay_ms: float = 0.0
    host: str = "127.0.0.1"
    port: int = 0
    redis_url: str | None = None
    cache_key_template: str = "demo:{name}:{digest}"
    cache_ttl_s: int = 300

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        if not env.get("DATABASE_URL"):
            raise SystemExit("DATABASE_URL is required (a SQLAlchemy URL, e.g. sqlite:////tmp/demo.db)")
        try:
            return cls(
                database_url=env["DATABASE_URL"],
                revision=env.get("REVISION") or env.get("K_REVISION") or "dev",
                service=env.get("SERVICE") or env.get("K_SERVICE") or "demo",
                location=env.get("LOCATION") or "local",
                pool_size=int(env.get("DB_POOL_SIZE", "10")),
                pool_timeout_s=float(env.get("DB_POOL_TIMEOUT", "30")),
                query_delay_ms=float(env.get("DB_QUERY_DELAY_MS", "0")),
                host=env.get("HOST", "127.0.0.1"),
                port=int(env.get("PORT", "0")),
                redis_url=env.get("REDIS_URL") or None,
                cache_key_template=env.get("CACHE_KEY_TEMPLATE", "demo:{name}:{digest}"),
                cache_ttl_s=int(env.get("CACHE_TTL_S", "300")),
            )
        except ValueError as err:
            raise SystemExit(
                f"bad setting: {err} (DB_POOL_SIZE/PORT are integers, as is CACHE_TTL_S; timeouts and delays numbers)"
            ) from None


def seed(database_url: str, rows: int = 2000, customers: int = 100) -> None:
    """Create and fill the demo table ``orders`` (idempotent: an existing table is left as it is)."""
    engine = sa.create_engine(database_url)
    rnd = random.Random(7)
    values = [{"id": i, "c": rnd.randrange(customers), "a": round(rnd.uniform(1, 500), 2)} for i in range(1, rows + 1)]
    try:
        with engine.begin() as conn:
            if sa.inspect(conn).has_table("orders"):
                return
            conn.execute(
                sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, amount REAL)")
            )
            conn.execute(sa.text("INSERT INTO orders (id, customer_id, amount) VALUES (:id, :c, :a)"), values)
    except sa.exc.DBAPIError:
        # Several revisions starting on one database race to create it: the loser finds it made.
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("orders"):
                raise
    finally:
        engine.dispose()


class DemoService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = sa.create_engine(
            settings.database_url,
            poolclass=QueuePool,
            pool_size=settings.pool_size,
            max_overflow=0,  # the pool size is the limit under test
            pool_timeout=settings.pool_timeout_s,
        )
        self.registry = CollectorRegistry()
        values = (settings.revision, settings.service, settings.location)
        self.latency = Histogram(
            "http_request_duration_seconds", "Request latency", LABELS, buckets=LATENCY_BUCKETS, registry=self.registry
        ).labels(*values)
        requests = Counter("http_requests", "Requests by status class", [*LABELS, "code_class"], registry=self.registry)
        self.requests = {c: requests.labels(*values, c) for c in CODE_CLASSES}  # pre-created: 0, not absent
        pool = self.engine.pool
        Gauge("db_pool_checked_out", "Connections in use", LABELS, registry=self.registry).labels(*values).set_function(
            pool.checkedout  # type: ignore[attr-defined]
        )
        Gauge("db_pool_size", "Pool size", LABELS, registry=self.registry).labels(*values).set(settings.pool_size)
        self.pool_timeouts = Counter(
            "db_pool_timeouts", "Requests that found no free connection in time", LABELS, registry=self.registry
        ).labels(*values)
        lookups = Counter("cache_lookups", "Cache lookups by result", [*LABELS, "result"], registry=self.registry)
        self.cache_lookups = {r: lookups.labels(*values, r) for r in ("hit", "miss")}
        self.cache = None
        if settings.redis_url:
            import redis

            self.cache = redis.Redis.from_url(settings.redis_url, socket_timeout=2)

    def orders_sql(self, customer: int) -> str:
        """The statement with its value inlined: what dbopt's cache warming runs and keys on."""
        return f"SELECT count(*), coalesce(sum(amount), 0) FROM orders WHERE customer_id = {int(customer)}"

    def orders(self, customer: int) -> tuple[int, str]:
        if self.cache is None:
            return self._orders_from_db(customer)
        from dbopt.cache.warm import WarmItem, cache_key, encode_rows

        key = cache_key(self.settings.cache_key_template, WarmItem("orders", self.orders_sql(customer)), plan="demo",
                        target="demo")  # fmt: skip
        cached = self.cache.get(key)
        if cached is not None:
            self.cache_lookups["hit"].inc()
            count, total = json.loads(cached)[0]
            return 200, f'{{"customer": {customer}, "orders": {count}, "total": {total}}}\n'
        self.cache_lookups["miss"].inc()
        status, body = self._orders_from_db(customer)
        if status == 200:
            row = json.loads(body)
            self.cache.set(key, encode_rows([(row["orders"], row["total"])]), ex=self.settings.cache_ttl_s)
        return status, body

    def _orders_from_db(self, customer: int) -> tuple[int, str]:
        try:
            with self.engine.connect() as conn:
                count, total = conn.execute(
                    sa.text("SELECT count(*), coalesce(sum(amount), 0) FROM orders WHERE customer_id = :c"),
                    {"c": customer},
                ).one()
                if self.settings.query_delay_ms:
                    time.sleep(self.settings.query_delay_ms / 1000)
        except sa.exc.TimeoutError:
            self.pool_timeouts.inc()
            return 503, "no database connection free in time\n"
        except sa.exc.SQLAlchemyError as err:
            return 500, f"database error: {type(err).__name__}\n"
        return 200, f'{{"customer": {customer}, "orders": {count}, "total": {total}}}\n'

    def handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/metrics":
                    self._send(200, generate_latest(service.registry), CONTENT_TYPE_LATEST)
                    return
                started = time.perf_counter()
                if url.path == "/orders":
                    try:
                        status, body = service.orders(int(parse_qs(url.query).get("customer", ["0"])[0]))
                    except ValueError:
                        status, body = 400, "customer must be an integer\n"
                elif url.path == "/healthz":
                    status, body = 200, "ok\n"
                else:
                    status, body = 404, "not found\n"
                self._send(status, body.encode(), "text/plain; charset=utf-8")
                service.latency.observe(time.perf_counter() - started)
                service.requests[f"{status // 100}xx"].inc()

            def _send(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:  # the metrics are the log
                pass

        return Handler

    def server(self) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer((self.settings.host, self.settings.port), self.handler())
        server.daemon_threads = True
        return server


def main() -> None:
    settings = Settings.from_env()
    seed(settings.database_url)  # a fresh database answers 200, not 500 (no such table)
    server = DemoService(settings).server()
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
