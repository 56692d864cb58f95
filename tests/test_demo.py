"""`make demo`'s own entry point end to end: data, query log, `airflow dags test dbopt_demo`, and
the HTML report it prints, rendered in headless Chromium."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.screenshots import assert_renders

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[1]


def test_demo_command_runs_the_plan_and_its_report_renders(tmp_path):
    env = dict(os.environ, DBOPT_DEMO_SCALE="0.1", DBOPT_DEMO_STATEMENTS="300",
               DBOPT_DEMO_DIR=str(tmp_path / "demo"), DBOPT_REPORTS_DIR=str(tmp_path / "reports"),
               PYTHONPATH=f"{ROOT / 'plugins'}:{ROOT}")  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "dbopt.demo"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "health gate: GO" in done.stdout
    assert re.search(r"^  KEEP {3}dbopt_", done.stdout, re.MULTILINE), done.stdout
    report = Path(re.search(r"^dbopt demo: report: (\S+)$", done.stdout, re.MULTILINE).group(1))
    assert report.name == "report.html" and report.is_relative_to(tmp_path / "reports")
    assert "Benchmark before / after" in report.read_text()
    assert_renders(report, tmp_path)
