"""The per-run report from a record measured on a real SQLite database, and from partial records;
a headless Chromium renders the HTML file to check it shows (not a blank page)."""

from __future__ import annotations

import html as html_lib
import re
from pathlib import Path

import pytest

from dbopt.history import HistoryStore
from dbopt.report.run import run_email, write_run_report
from tests.run_records import failed_build_record, measured_record, no_go_record
from tests.screenshots import assert_renders


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict:
    return measured_record(tmp_path_factory.mktemp("shop"))


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", html)))


def test_full_report_shows_every_figure_with_its_method(measured, tmp_path):
    out = write_run_report(measured, tmp_path / "run")
    html = Path(out["html"]).read_text()
    text = _text(html)
    shop = measured["targets"]["shop"]

    assert "GO all figures pass" in text and "fail if > 50" in text and "31.4" in text
    for q in shop["bench_before"]["queries"]:
        assert q["name"] in text
    compared = shop["bench_after"].get("before_arm") or shop["bench_before"]  # the arm the verdict compared
    first = compared["queries"][0]["summary"]
    assert f"{first['median_ms']:.3f}" in text or f"{first['median_ms']:.2f}" in text
    assert "Mann-Whitney U two-sided" in text and "A/A drift" in text
    assert "warm-up per query until the median of the last 5 runs" in text
    assert "linear interpolation between closest ranks" in text
    for ddl in shop["create_index"]:
        assert ddl["index"] in text
    assert 'CREATE INDEX IF NOT EXISTS "dbopt_orders_amount_' in text
    assert "no benchmark query uses it" in text and "kB" in text  # reverted, with its measured size
    assert "promote 3 passing checks in a row" in text
    assert "expected" not in text.lower()
    assert html.count("data:image/png;base64,") == 1  # the latency chart, embedded: the file stands alone

    assert [Path(c).name for c in out["charts"]] == ["latency-shop.png"]
    assert Path(out["charts"][0]).read_bytes().startswith(b"\x89PNG")
    md = Path(out["markdown"]).read_text()
    assert "| query | before n | p50 | p95 | p99 |" in md and "**GO**" in md and "DROP INDEX IF EXISTS" in md


def test_report_with_history_adds_the_weekly_trend(measured, tmp_path):
    with HistoryStore(f"sqlite:///{tmp_path / 'history.db'}") as store:
        store.record_run(measured)
        out = write_run_report(measured, tmp_path / "run", history=store)
    assert sorted(Path(c).name for c in out["charts"]) == ["latency-shop.png", "trend.png"]
    assert Path(out["html"]).read_text().count("data:image/png;base64,") == 2


def test_report_shows_what_the_hourly_scaling_set_on_the_runs_services(measured, tmp_path):
    change = {"window": "peak 18-22", "local_time": "2026-11-23 19:00 KST", "applied": True,
              "before": {"min_instances": 2, "max_instances": 50},
              "after": {"min_instances": 5, "max_instances": 100}}  # fmt: skip
    with HistoryStore(f"sqlite:///{tmp_path / 'history.db'}") as store:
        store.record_scaling("dbopt_scaling", "scheduled__h19", [
            change | {"service": "api", "region": "us-central1"},
            change | {"service": "worker", "region": "us-east1"},  # not a service of this plan
        ])  # fmt: skip
        out = write_run_report(measured, tmp_path / "run", history=store)
    md, html = Path(out["markdown"]).read_text(), Path(out["html"]).read_text()
    assert "## Scaling applied by dbopt_scaling (last 7 days)" in md
    assert "| api | us-central1 | peak 18-22 | 2–50 | 5–100 | yes |" in md
    assert "us-east1" not in md and "<td>api</td><td>us-central1</td>" in html


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("no_go", ["NO-GO: the run stopped at the health gate", "fail if > 50", "73.9", "No benchmark in the record"]),
        ("failed", ["failed", "database is locked", "no result from plan verification", "not judged"]),
        ("dry_run", ["Dry run: nothing was changed", "dry_run", "dry run: no backup taken"]),
        ("bare", ["No health check result", "No canary in this run"]),
    ],
)
def test_partial_records_render(measured, tmp_path, kind, says):
    record = {
        "no_go": lambda: no_go_record(),
        "failed": lambda: failed_build_record(measured),
        "dry_run": lambda: measured_record(tmp_path, dry_run=True),
        "bare": lambda: {"plan": "orders", "dag_id": "dbopt_orders", "run_id": "manual__x"},
    }[kind]()
    out = write_run_report(record, tmp_path / kind)
    text = _text(Path(out["html"]).read_text())
    for phrase in says:
        assert phrase in text, phrase
    assert Path(out["markdown"]).read_text().startswith("# dbopt orders")


def test_report_email_references_its_charts_by_content_id(measured):
    email = run_email(measured)
    assert email.subject.startswith("[dbopt] orders manual__2026-11-23T09:00:00+09:00: ")
    cids = re.findall(r'src="cid:([^"]+)"', email.html)
    assert cids == list(email.images) == ["latency-shop@dbopt"]
    assert "data:image" not in email.html


def test_chromium_renders_the_report_file(measured, tmp_path):
    out = write_run_report(measured, tmp_path / "run")
    assert_renders(Path(out["html"]), tmp_path)
