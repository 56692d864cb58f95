"""Cache warming on the demo service: hit ratio and p95 from a cold start, without and with dbopt's warming.

    .venv/bin/python bench/cache_warming.py [--requests 3000] [--warm 200] [--delay-ms 5]

The demo service (include/demo_service/app.py) reads ``/orders?customer=N`` through Redis (database 13,
keys under a prefix of this run, deleted at the end). Customers are drawn from a Zipf-like distribution
(s = 1.1 over ``--customers``, seed 17), the same sequence in both runs, 4 client threads. Each run starts
cold (its keys deleted). "warmed" first runs ``dbopt.cache.warm`` for the ``--warm`` most requested
customers (what the workload's call counts would pick), through the SQLite target, into the keys the
service reads. ``--delay-ms`` is added to every database read (the demo table is tiny; production reads
are not). Hit ratio: the service's own ``cache_lookups_total`` and Redis ``INFO stats`` deltas; latency:
client-side wall time per request.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

import redis  # noqa: E402

from dbopt.bench.stats import percentile  # noqa: E402
from dbopt.cache.stats import hit_ratio, read_stats  # noqa: E402
from dbopt.cache.warm import WarmItem, warm  # noqa: E402
from dbopt.targets import open_target  # noqa: E402
from include.demo_service.app import DemoService, Settings, seed  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/13"


def customers(n: int, count: int, seed_: int = 17) -> list[int]:
    rng = random.Random(seed_)
    weights = [1 / (rank**1.1) for rank in range(1, count + 1)]
    return rng.choices(range(count), weights=weights, k=n)


def run(service: DemoService, url: str, sequence: Sequence[int], client: redis.Redis) -> dict[str, float]:
    hits0, misses0 = (service.cache_lookups[r]._value.get() for r in ("hit", "miss"))
    before = read_stats(client)
    latencies = [0.0] * len(sequence)
    first = max(1, len(sequence) // 10)

    def one(i: int) -> None:
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"{url}/orders?customer={sequence[i]}", timeout=10) as answer:
            answer.read()
        latencies[i] = (time.perf_counter() - t0) * 1000

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(first)))  # the cold-start window, counted on its own
        first_hits = service.cache_lookups["hit"]._value.get() - hits0
        list(pool.map(one, range(first, len(sequence))))
    hits, misses = (service.cache_lookups[r]._value.get() for r in ("hit", "miss"))
    return {
        "hit_ratio_app": (hits - hits0) / ((hits - hits0) + (misses - misses0)),
        "hit_ratio_redis": hit_ratio(before, read_stats(client)) or 0.0,
        "hit_ratio_first_10pct": first_hits / first,
        "mean_ms": sum(latencies) / len(latencies),
        "p95_ms": percentile(latencies, 95),
        "p95_first_10pct_ms": percentile(latencies[:first], 95),
        "seconds": time.perf_counter() - started,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--warm", type=int, default=200, help="customers warmed before the warmed run")
    parser.add_argument("--delay-ms", type=float, default=5.0)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="dbopt-cache-bench-"))
    db_url = f"sqlite:///{work / 'demo.db'}"
    seed(db_url, rows=20 * args.customers, customers=args.customers)
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"dbopt-bench-{uuid.uuid4().hex[:8]}"
    template = f"{prefix}:{{name}}:{{digest}}"
    service = DemoService(Settings(db_url, revision="bench", pool_size=4, query_delay_ms=args.delay_ms,
                                   redis_url=REDIS_URL, cache_key_template=template, cache_ttl_s=600))  # fmt: skip
    server = service.server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = "http://{}:{}".format(*server.server_address[:2])
    sequence = customers(args.requests, args.customers)
    hot = [c for c, _ in Counter(sequence).most_common(args.warm)]
    rows = {}
    try:
        for name in ("cold", "warmed"):
            for key in client.scan_iter(match=f"{prefix}:*"):
                client.delete(key)
            warmed = None
            if name == "warmed":
                with open_target(db_url) as target:
                    items = [WarmItem("orders", service.orders_sql(c)) for c in hot]
                    warmed = warm(target, client, items, plan="demo", target_name="demo", key_template=template,
                                  ttl_s=600)  # fmt: skip
            rows[name] = run(service, url, sequence, client) | (
                {"warm_items": warmed.items, "warm_bytes": warmed.bytes, "warm_s": warmed.seconds} if warmed else {}
            )
    finally:
        server.shutdown()
        server.server_close()
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        service.engine.dispose()

    print(f"{args.requests} requests, Zipf(1.1) over {args.customers} customers, 4 threads, "
          f"+{args.delay_ms:g} ms per database read; warmed: top {args.warm} customers")  # fmt: skip
    print("| run | hit ratio (app) | (Redis INFO) | first 10 % | mean ms | p95 ms | p95 first 10 % ms | warming |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, r in rows.items():
        warming = (f"{r['warm_items']} keys, {r['warm_bytes']} B, {r['warm_s']:.3f} s" if "warm_items" in r
                   else "none")  # fmt: skip
        print(f"| {name} | {r['hit_ratio_app']:.3f} | {r['hit_ratio_redis']:.3f} | {r['hit_ratio_first_10pct']:.3f} | "
              f"{r['mean_ms']:.2f} | "
              f"{r['p95_ms']:.2f} | {r['p95_first_10pct_ms']:.2f} | {warming} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
