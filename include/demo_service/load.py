"""Bounded load for the demo service: waves of N concurrent requests, loopback only.

Every ``interval_s`` a wave of ``concurrency`` simultaneous ``GET /orders`` requests goes out, until
``requests`` were sent, ``duration_s`` passed, or ``stop`` is set — whichever comes first. Waves make
pool contention reproducible: with pool size 1 and a wave of 4, requests queue for the connection.

Run: ``python include/demo_service/load.py http://127.0.0.1:8000 --concurrency 4 --requests 200``
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    sent: int = 0
    by_status: dict[str, int] = field(default_factory=dict)  # "200", "503", … and "error" (no answer)
    duration_s: float = 0.0


def require_loopback(url: str) -> None:
    """Refuse any target that is not on this machine (load goes to loopback only)."""
    host = urlsplit(url).hostname
    if not host:
        raise ValueError(f"load target {url!r} has no host")
    addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    if not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise ValueError(f"load target {url!r} resolves to {sorted(addresses)}: only loopback addresses are allowed")


def get_status(url: str, timeout_s: float) -> str:
    """The HTTP status of a GET as text ("200", "503" …), or "error" when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            response.read()
            return str(response.status)
    except urllib.error.HTTPError as err:
        return str(err.code)
    except (urllib.error.URLError, OSError):
        return "error"


def run_load(
    base_url: str,
    *,
    concurrency: int = 4,
    requests: int = 200,
    duration_s: float = 10.0,
    interval_s: float = 0.5,
    timeout_s: float = 5.0,
    customers: int = 100,
    stop: threading.Event | None = None,
) -> LoadResult:
    if concurrency < 1 or requests < 1 or duration_s <= 0 or interval_s <= 0:
        raise ValueError("concurrency and requests must be >= 1, duration_s and interval_s > 0")
    require_loopback(base_url)
    stop = stop or threading.Event()
    counts: Counter[str] = Counter()
    sent = 0
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        while sent < requests and time.monotonic() - started < duration_s and not stop.is_set():
            wave_start = time.monotonic()
            size = min(concurrency, requests - sent)
            urls = [f"{base_url.rstrip('/')}/orders?customer={(sent + i) % customers}" for i in range(size)]
            counts.update(pool.map(lambda u: get_status(u, timeout_s), urls))
            sent += size
            stop.wait(max(0.0, interval_s - (time.monotonic() - wave_start)))
    return LoadResult(sent, dict(counts), round(time.monotonic() - started, 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="base URL of the demo service, e.g. http://127.0.0.1:8000")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests", type=int, default=200, help="stop after this many requests")
    parser.add_argument("--duration", type=float, default=10.0, help="stop after this many seconds")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between waves")
    args = parser.parse_args()
    result = run_load(
        args.url,
        concurrency=args.concurrency,
        requests=args.requests,
        duration_s=args.duration,
        interval_s=args.interval,
    )
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
