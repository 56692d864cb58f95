"""The demo service reading through Redis, and dbopt's warming filling exactly the keys it reads."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from prometheus_client import generate_latest

from dbopt.cache.warm import WarmItem, warm
from dbopt.metrics.sources import PrometheusSource
from dbopt.targets import open_target
from include.demo_service.app import DemoService, Settings, seed
from include.demo_service.load import run_load
from tests.metrics_fixtures import SCRAPE_S, prometheus
from tests.test_cache import REDIS_URL, cache  # noqa: F401 - the fixture


def test_read_through_and_warmed_keys_are_hits(sqlite_url: str, cache: tuple[redis.Redis, str]) -> None:  # noqa: F811
    client, prefix = cache
    seed(sqlite_url, rows=500)
    template = f"{prefix}:{{name}}:{{digest}}"
    service = DemoService(Settings(sqlite_url, revision="c-1", redis_url=REDIS_URL, cache_key_template=template))
    try:
        cold = service.orders(3)
        assert service.orders(3) == cold and cold[0] == 200  # the second read is served from Redis
        with open_target(sqlite_url) as target:
            result = warm(target, client, [WarmItem("orders", service.orders_sql(c)) for c in (5, 6)],
                          plan="demo", target_name="demo", key_template=template, ttl_s=60)  # fmt: skip
        assert result.items == 2
        assert service.orders(5)[0] == service.orders(6)[0] == 200
        exposition = generate_latest(service.registry).decode()
        labels = 'location="local",result="{}",revision="c-1",service="demo"'  # sorted, as exposed
        assert f"cache_lookups_total{{{labels.format('hit')}}} 3.0" in exposition  # 3 again, 5 and 6 warmed
        assert f"cache_lookups_total{{{labels.format('miss')}}} 1.0" in exposition
        assert service.orders(5)[1] == service._orders_from_db(5)[1]  # the warmed value is what the database says
    finally:
        service.engine.dispose()
        service.cache.close()


def test_app_hit_ratio_through_prometheus(sqlite_url: str, cache: tuple[redis.Redis, str]) -> None:  # noqa: F811
    """The service's own cache counter, scraped by a real Prometheus, as the rule metric cache_hit_ratio."""
    _, prefix = cache
    seed(sqlite_url, rows=500)
    service = DemoService(Settings(sqlite_url, revision="c-p", redis_url=REDIS_URL,
                                   cache_key_template=f"{prefix}:{{name}}:{{digest}}"))  # fmt: skip
    server = service.server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    try:
        with prometheus([f"{host}:{port}"]) as url:
            result = run_load(f"http://{host}:{port}", concurrency=4, requests=120, duration_s=30, interval_s=0.1,
                              customers=10)  # fmt: skip
            assert result.by_status == {"200": 120}
            time.sleep(3 * SCRAPE_S)
            source = PrometheusSource(url, {"service": {"revision": "c-p"}}, step_s=1, rate_window_s=60)
            series = source.query("cache_hit_ratio", "service", 30)
            source.close()
        hits, misses = (service.cache_lookups[r]._value.get() for r in ("hit", "miss"))
        # each customer misses once (twice if two requests of one wave ask for it before it is cached)
        assert hits + misses == 120 and 10 <= misses <= 20
        assert series.samples and series.samples[-1].value == pytest.approx(hits / 120, abs=0.02)
    finally:
        server.shutdown()
        server.server_close()
        service.engine.dispose()
        service.cache.close()
