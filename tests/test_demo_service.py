"""The demo service in-process (real SQLite file): pool exhaustion → 503, labelled metrics, bounded load."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import generate_latest

from include.demo_service.app import DemoService, Settings, seed
from include.demo_service.load import require_loopback, run_load


@pytest.fixture
def demo_db(sqlite_url: str) -> str:
    seed(sqlite_url, rows=500)
    return sqlite_url


def test_orders_and_pool_timeout(demo_db: str):
    service = DemoService(Settings(demo_db, revision="r-1", pool_size=1, pool_timeout_s=0.05))
    status, body = service.orders(3)
    assert status == 200 and '"customer": 3' in body
    with service.engine.connect():  # hold the only connection
        status, body = service.orders(3)
    assert status == 503 and "no database connection" in body
    exposition = generate_latest(service.registry).decode()
    labels = 'location="local",revision="r-1",service="demo"'
    assert f"db_pool_timeouts_total{{{labels}}} 1.0" in exposition
    assert f"db_pool_size{{{labels}}} 1.0" in exposition
    assert f'http_requests_total{{code_class="5xx",{labels}}} 0.0' in exposition  # present before any error
    service.engine.dispose()


def test_http_and_bounded_load(demo_db: str):
    service = DemoService(Settings(demo_db, revision="r-2", service="api", location="europe-west1", pool_size=2))
    server = service.server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    try:
        result = run_load(f"http://{host}:{port}", concurrency=3, requests=7, duration_s=5, interval_s=0.05)
        assert result.sent == 7 and result.by_status == {"200": 7}
        exposition = generate_latest(service.registry).decode()
        labels = 'location="europe-west1",revision="r-2",service="api"'
        assert f'http_requests_total{{code_class="2xx",{labels}}} 7.0' in exposition
        assert f"http_request_duration_seconds_count{{{labels}}} 7.0" in exposition
    finally:
        server.shutdown()
        server.server_close()
        service.engine.dispose()


def test_load_goes_to_loopback_only():
    require_loopback("http://127.0.0.1:8000")
    require_loopback("http://localhost:8000/x")
    with pytest.raises(ValueError, match="only loopback addresses are allowed"):
        require_loopback("http://10.1.2.3:8000")
    with pytest.raises(ValueError, match="only loopback"):
        run_load("http://192.168.0.10:80", requests=1)


def test_settings_errors_name_the_fix():
    with pytest.raises(SystemExit, match="DATABASE_URL is required"):
        Settings.from_env({})
    with pytest.raises(SystemExit, match="DB_POOL_SIZE/PORT are integers"):
        Settings.from_env({"DATABASE_URL": "sqlite:///x.db", "DB_POOL_SIZE": "ten"})
    s = Settings.from_env({"DATABASE_URL": "sqlite:///x.db", "REVISION": "r9", "DB_POOL_TIMEOUT": "0.05"})
    assert (s.revision, s.service, s.location, s.pool_size, s.pool_timeout_s) == ("r9", "demo", "local", 10, 0.05)
    # as Cloud Run (and the local data plane) starts it
    s = Settings.from_env({"DATABASE_URL": "sqlite:///x.db", "K_REVISION": "api-1a2b", "K_SERVICE": "api",
                           "LOCATION": "us-central1"})  # fmt: skip
    assert (s.revision, s.service, s.location) == ("api-1a2b", "api", "us-central1")


def test_started_as_documented_it_seeds_its_database_and_answers_200(tmp_path):
    """A fresh database file: the service creates and fills its table at start (before: 500, no such table)."""
    from tests.metrics_fixtures import start_demo

    demo = start_demo(f"sqlite:///{tmp_path / 'fresh.db'}", "r-fresh", pool_size=2)
    try:
        result = run_load(demo.url, concurrency=2, requests=4, duration_s=5, interval_s=0.05)
        assert result.by_status == {"200": 4}
    finally:
        demo.stop()
