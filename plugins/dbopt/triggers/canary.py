"""Deferrable canary analysis: polls the metric sources in the triggerer and fires the decision."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from dbopt.metrics.analysis import AnalysisPlan, advance, outcome, start
from dbopt.metrics.sources import close_all, sources_from_config


class CanaryAnalysisTrigger(BaseTrigger):
    """Runs ``dbopt.metrics.analysis`` every ``plan["interval_s"]`` until it decides, then yields one event.

    ``plan`` is ``AnalysisPlan.to_dict()``, ``sources`` maps a source name to ``MetricSource.to_config()``;
    ``started_at`` (unix seconds) anchors warm-up and deadline, so a trigger restarted by the triggerer
    keeps the original deadline (its check counters start again from zero).
    ``database_conn_id`` names the connection of the "database" source: the triggerer resolves it, so the
    serialized trigger (stored in the metadata database) holds no URL or password.
    The event payload is ``analysis.outcome(state)``: {"decision": "promote" | "rollback", "reason", …},
    plus ``resume`` when given: plain data the deferring task needs when it resumes. The event carries it
    rather than ``defer(kwargs=…)``, which ``dag.test()`` of Airflow 3.3.2 drops when a trigger fires
    (apache/airflow#69942); the triggerer keeps both.
    """

    def __init__(
        self,
        plan: dict[str, Any],
        sources: dict[str, dict[str, Any]],
        started_at: float,
        database_conn_id: str | None = None,
        resume: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.plan = plan
        self.sources = sources
        self.started_at = started_at
        self.database_conn_id = database_conn_id
        self.resume = resume

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"plan": self.plan, "sources": self.sources, "started_at": self.started_at,
             "database_conn_id": self.database_conn_id, "resume": self.resume},
        )  # fmt: skip

    async def run(self) -> AsyncIterator[TriggerEvent]:
        plan = AnalysisPlan.from_dict(self.plan)
        configs = await asyncio.to_thread(resolve_sources, self.sources, self.database_conn_id)
        sources = sources_from_config(configs)
        try:
            state = start(self.started_at)
            while True:
                # The sources are blocking HTTP/DB clients: keep them off the triggerer's event loop.
                state = await asyncio.to_thread(advance, plan, state, sources, time.time())
                self.log.info("canary analysis: %s", state.history[-1] if state.history else "warming up")
                if state.decision != "continue":
                    yield TriggerEvent(outcome(state) | ({"resume": self.resume} if self.resume is not None else {}))
                    return
                await asyncio.sleep(plan.interval_s)
        finally:
            close_all(sources)


def resolve_sources(sources: dict[str, dict[str, Any]], database_conn_id: str | None) -> dict[str, dict[str, Any]]:
    """Source configs with their connections resolved where the analysis runs: a ``cloud_monitoring``
    source's ``gcp_conn_id`` becomes that connection's credentials (key_path, keyfile_dict, impersonation …),
    a ``redis`` source's ``redis_conn_id`` its URL, and ``database_conn_id`` the "database" source's URL."""
    configs = dict(sources)
    for name, config in configs.items():
        if config.get("kind") == "cloud_monitoring" and "gcp_conn_id" in config:
            from dbopt.hooks.gcp import GcpBaseHook

            extra = GcpBaseHook.get_connection(config["gcp_conn_id"]).extra_dejson
            configs[name] = {**{k: v for k, v in config.items() if k != "gcp_conn_id"}, "credentials": extra}
        if config.get("kind") == "redis" and "redis_conn_id" in config:
            from dbopt.hooks.redis import RedisHook

            url = RedisHook(config["redis_conn_id"]).url
            configs[name] = {**{k: v for k, v in config.items() if k != "redis_conn_id"}, "url": url}
    if database_conn_id:
        from dbopt.hooks.database import DbTargetHook

        url = DbTargetHook(database_conn_id).url.render_as_string(hide_password=False)
        configs["database"] = {"kind": "database", **configs.get("database", {}), "url": url}
    return configs
