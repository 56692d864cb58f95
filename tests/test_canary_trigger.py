"""The canary monitor defers by default, and what it hands the triggerer (serialized into the metadata
database) names the database connection, never its URL or password; the trigger resolves it and decides."""

from __future__ import annotations

import asyncio
import importlib
import json

import pytest
from airflow.sdk.exceptions import TaskDeferred
from sqlalchemy.engine import make_url

from dbopt.plan import MonitorSpec
from dbopt.sensors.canary import CanaryAnalysisSensor

PASSWORD = "s3cret-canary-pw"


def test_serialized_trigger_carries_the_connection_id_not_the_url(pg_url, monkeypatch):
    u = make_url(pg_url)
    conn = {"conn_type": "postgres", "host": u.host, "port": u.port, "login": u.username, "password": PASSWORD,
            "schema": u.database}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_CANARY_DB", json.dumps(conn))  # trust auth: any password connects
    rule = {"metric": "long_transactions", "op": ">", "threshold": 5, "scope": "database"}
    monitor = MonitorSpec(duration_s=5, interval_s=0.5, required_passes=2, rules=[rule])
    sensor = CanaryAnalysisSensor(task_id="monitor", plan=monitor.analysis_plan(), sources={"database": {}},
                                  database_conn_id="canary_db")  # fmt: skip
    assert sensor.deferrable  # the default: the triggerer waits, no worker slot is held

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    classpath, kwargs = deferred.value.trigger.serialize()
    stored = json.dumps(kwargs)
    assert kwargs["database_conn_id"] == "canary_db"
    assert PASSWORD not in stored and u.database not in stored and "postgresql" not in stored

    module, name = classpath.rsplit(".", 1)
    trigger = getattr(importlib.import_module(module), name)(**kwargs)  # as the triggerer rebuilds it

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    result = sensor.execute_complete({}, asyncio.run(asyncio.wait_for(first_event(), 60)))
    assert result["decision"] == "promote", result
