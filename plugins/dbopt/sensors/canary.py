"""The canary analysis sensor: waits for a promote / rollback decision and returns it as XCom."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from dbopt.metrics.analysis import AnalysisPlan, AnalysisState, advance, backstop_s, outcome, replay, start
from dbopt.metrics.rules import check_sources
from dbopt.metrics.sources import DatabaseSource, MetricSource, close_all, sources_from_config
from dbopt.triggers.canary import CanaryAnalysisTrigger, resolve_sources


class CanaryAnalysisSensor(BaseSensorOperator):
    """Run the canary analysis until it decides; return ``{"decision": "promote" | "rollback", …}``.

    A rollback decision does not fail the task: the DAG branches on ``decision`` (failing here would
    skip the rollback task downstream). Modes, all with the same analysis code:

    * ``deferrable=True`` — defers to ``CanaryAnalysisTrigger`` (frees the worker slot);
    * ``mode="poke"`` — checks every ``poke_interval`` (default: the plan's ``interval_s``), counters
      kept on the operator;
    * ``mode="reschedule"`` — keeps nothing between pokes, so each poke replays every check due since
      the first poke against the metrics backend's history (``analysis.replay``); this needs sources that
      answer for past times, so database rules are refused in this mode.

    :param plan: ``AnalysisPlan`` as plain data (rules, interval_s, deadline_s, limits, safe_state).
    :param sources: source name → ``MetricSource.to_config()`` (rules use "metrics" / "database" by default).
    :param database_conn_id: an Airflow connection whose database becomes the "database" source; resolved
        where the analysis runs (worker or triggerer), so no credentials sit in the DAG, its rendered template
        fields or the serialized trigger. Likewise a ``cloud_monitoring`` source's ``gcp_conn_id`` becomes that
        Google connection's credentials.
    """

    template_fields: Sequence[str] = ("plan", "sources")
    ui_color = "#fdf3e7"

    def __init__(
        self,
        *,
        plan: dict[str, Any],
        sources: dict[str, dict[str, Any]],
        deferrable: bool = True,  # the analysis runs for minutes: by default no worker slot waits on it
        database_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(plan, Mapping):  # validated in execute(): a bad plan fails the task, not the DAG file
            interval = plan.get("interval_s", AnalysisPlan.interval_s)
            kwargs.setdefault("poke_interval", interval)
            kwargs.setdefault("timeout", backstop_s(plan.get("deadline_s", AnalysisPlan.deadline_s), interval))
        super().__init__(**kwargs)
        self.plan = plan
        self.sources = sources
        self.deferrable = deferrable
        self.database_conn_id = database_conn_id
        self._plan: AnalysisPlan | None = None
        self._sources: dict[str, MetricSource] = {}
        self._state: AnalysisState | None = None

    def _source_configs(self) -> dict[str, dict[str, Any]]:
        return resolve_sources(self.sources, self.database_conn_id)

    def _load(self) -> tuple[AnalysisPlan, dict[str, MetricSource]]:
        plan = AnalysisPlan.from_dict(self.plan)
        sources = sources_from_config(self._source_configs())
        try:
            check_sources(plan.rules, sources)
            if self.reschedule and any(isinstance(sources[r.source_name], DatabaseSource) for r in plan.rules):
                raise ValueError(
                    "CanaryAnalysisSensor: database rules need mode='poke' or deferrable=True "
                    "(reschedule mode replays history, and database figures have none)"
                )
        except ValueError:
            close_all(sources)
            raise
        return plan, sources

    def execute(self, context: Any) -> Any:
        plan, sources = self._load()
        if self.deferrable:
            close_all(sources)  # validated; the trigger builds its own in the triggerer
            self.defer(
                trigger=CanaryAnalysisTrigger(
                    plan=plan.to_dict(),
                    sources=dict(self.sources),
                    started_at=time.time(),
                    database_conn_id=self.database_conn_id,
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout),
            )
        self._plan, self._sources, self._state = plan, sources, None
        try:
            return super().execute(context)
        finally:
            close_all(sources)

    def poke(self, context: Any) -> PokeReturnValue:
        assert self._plan is not None, "poke() runs inside execute()"
        now = time.time()
        if self.reschedule:
            first = context["ti"].get_first_reschedule_date(context)
            state = replay(self._plan, self._sources, first.timestamp() if first else now, now)
        else:
            self._state = advance(self._plan, self._state or start(now), self._sources, now)
            state = self._state
        self.log.info(
            "canary analysis: %s (checks %d, failures %d, inconclusive %d, passes in a row %d) %s",
            state.decision,
            state.checks,
            state.failures,
            state.inconclusives,
            state.passes_in_row,
            state.reason or (state.history[-1] if state.history else "warming up"),
        )
        if state.decision == "continue":
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=outcome(state))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(event, dict) or event.get("decision") not in ("promote", "rollback"):
            raise ValueError(f"CanaryAnalysisSensor: the trigger sent no decision: {event!r}")
        self.log.info("canary analysis: %s — %s", event["decision"], event.get("reason", ""))
        return event
