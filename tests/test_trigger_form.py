"""The trigger form as a user sees it: headless Chromium opens the DAG in the real api-server's UI,
clicks Trigger, and the form shows a human title for every Param — no raw field names, no
`(plan: None)` — in a screenshot that is not blank."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from dbopt.rest_api import Api
from dbopt.stack import Stack, StackConfig
from dbopt.weekly_dag import OVERRIDABLE
from tests.browser import chromium_page

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(600)]
DAG_ID = "dbopt_demo"
TITLES = ["Dry run", "Skip deploy", *(title for _, title in OVERRIDABLE.values())]
BUTTON, IS_TRIGGER = "[...document.querySelectorAll('button')]", "b => b.innerText.trim() === 'Trigger'"
# the trigger dialog (menus are dialogs too): the one holding the form
FORM = "[...document.querySelectorAll('[role=dialog]')].find(d => d.innerText.includes('Dry run'))"
DIALOG = f"(({FORM}) || {{}}).innerText || ''"


def test_trigger_form_shows_human_titles(tmp_path):
    config = StackConfig(home=tmp_path / "airflow", metadata_url=f"sqlite:///{tmp_path / 'airflow.db'}",
                         extra_env={"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                                    "DBOPT_REPORTS_DIR": str(tmp_path / "reports")})  # fmt: skip
    stack = Stack(config)
    try:
        stack.start(only=("api-server", "dag-processor"))  # the form needs the UI and the parsed DAG only
        stack.wait_until_up()
        Api(config.url, config.password()).wait_for_dag(DAG_ID)
        with chromium_page(f"{config.url}/dags/{DAG_ID}", tmp_path / "profile") as page:
            page.wait_for(f"{BUTTON}.some({IS_TRIGGER})")
            page.evaluate(f"{BUTTON}.find({IS_TRIGGER}).click()")
            page.wait_for(f"{DIALOG}.includes('Dry run')")
            # open collapsed sections of the form so every field is on screen
            page.evaluate(f"({FORM}).querySelectorAll('button[aria-expanded=false]').forEach(b => b.click())")
            text = page.wait_for(f"{DIALOG}.includes({TITLES[-1]!r}) && {DIALOG}")
            shot = page.screenshot(tmp_path / "trigger-form.png")
    finally:
        stack.stop()
    for title in TITLES:
        assert title in text, f"{title!r} missing from the form:\n{text}"
    for raw in ("p95_ms_max", "storage_budget_mb", "dry_run", "(plan: None)", "None)"):
        assert raw not in text, f"{raw!r} shown in the form:\n{text}"
    pixels = matplotlib.image.imread(shot)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1])[::7], axis=0)) > 20  # a rendered form, not blank
