"""The demo service reading through Redis, and dbopt's warming filling exactly the keys it reads."""

from __future__ import annotations

import redis
from prometheus_client import generate_latest

from dbopt.cache.warm import WarmItem, warm
from dbopt.targets import open_target
from include.demo_service.app import DemoService, Settings, seed
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
        assert 'cache_lookups_total{result="hit",revision="c-1"} 3.0' in exposition  # 3 again, 5 and 6 warmed
        assert 'cache_lookups_total{result="miss",revision="c-1"} 1.0' in exposition
        assert service.orders(5)[1] == service._orders_from_db(5)[1]  # the warmed value is what the database says
    finally:
        service.engine.dispose()
        service.cache.close()
