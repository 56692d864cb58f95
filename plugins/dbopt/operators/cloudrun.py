"""Cloud Run canary operators: deploy a named revision, shift traffic, promote, roll back; service scaling.

The deploy XCom (``{project, region, service, previous_revision, new_revision}``) is what the later steps
take as ``deployment`` (``deployment=deploy.output``), so a rollback after a crash still knows where to go.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from dbopt.cloud.deployment import CANARY_TAG, Deployment
from dbopt.cloud.gcp import CloudError
from dbopt.hooks.cloudrun import CloudRunHook
from dbopt.operators.gcp import GcpBaseOperator

if TYPE_CHECKING:
    from dbopt.cloud.cloudrun import CloudRun


class CloudRunOperator(GcpBaseOperator):
    hook_class = CloudRunHook

    @property
    def client(self) -> CloudRun:
        return self.hook.client

    def _deployment(self, value: Any) -> Deployment:
        deployment = Deployment.from_value(value, source=f"{self.task_id}.deployment")
        if deployment is None:
            raise CloudError(f"{self.task_id}: no deployment recorded; pass the deploy task's XCom (deploy.output)")
        return deployment


class CloudRunDeployRevisionOperator(CloudRunOperator):
    """New revision ``{service}-{suffix}`` with env changes (e.g. ``DB_POOL_SIZE``) and/or a new image, 0% traffic.

    The suffix comes from the change and the DAG run id, so a retried task finds the revision it made.
    """

    template_fields: Sequence[str] = (*GcpBaseOperator.template_fields, "service", "region", "env", "image")

    def __init__(
        self, *, service: str, region: str, env: dict[str, Any] | None = None, image: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.service, self.region, self.env, self.image = service, region, env, image

    def execute(self, context: Any) -> dict[str, Any]:
        deployment = self.client.deploy(
            self.service, self.region, run_id=context["run_id"], env=self.env, image=self.image
        )
        return deployment.to_dict()


class CloudRunShiftTrafficOperator(CloudRunOperator):
    """``percent`` to the new revision (tagged, own URL), the rest to the previous one."""

    template_fields: Sequence[str] = (*GcpBaseOperator.template_fields, "deployment", "percent", "tag")

    def __init__(self, *, deployment: Any, percent: int | str, tag: str = CANARY_TAG, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployment, self.percent, self.tag = deployment, percent, tag

    def execute(self, context: Any) -> dict[str, Any]:
        percent = int(self.percent)  # templated values render as strings
        return self.client.shift_traffic(self._deployment(self.deployment), percent, tag=self.tag).to_dict()


class CloudRunPromoteOperator(CloudRunOperator):
    """All traffic to LATEST once it is the deployed revision."""

    template_fields: Sequence[str] = (*GcpBaseOperator.template_fields, "deployment")

    def __init__(self, *, deployment: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployment = deployment

    def execute(self, context: Any) -> dict[str, Any]:
        return self.client.promote(self._deployment(self.deployment)).to_dict()


class CloudRunRollbackOperator(CloudRunOperator):
    """All traffic back to the recorded previous revision; idempotent.

    Without a recorded deployment (the deploy task died before its XCom), ``service`` and ``region`` name the
    service and the revision now holding the non-canary traffic gets 100%. Given ``deployment=deploy.output``
    alone, a run whose deploy recorded nothing (it never ran) skips: there is nothing of this run to undo.
    """

    template_fields: Sequence[str] = (*GcpBaseOperator.template_fields, "deployment", "service", "region")

    def __init__(
        self, *, deployment: Any = None, service: str | None = None, region: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.deployment, self.service, self.region = deployment, service, region
        self.expects_deployment = deployment is not None  # an XComArg here; None after rendering = no record

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        deployment = Deployment.from_value(self.deployment, source=f"{self.task_id}.deployment")
        if deployment is not None:
            state = self.client.rollback(deployment.service, deployment.region, deployment.previous_revision)
        elif self.service and self.region:
            self.log.warning("no deployment recorded; rolling back to the revision serving non-canary traffic")
            state = self.client.rollback(self.service, self.region)
        elif self.expects_deployment:
            reason = "nothing to roll back: this run's deploy task recorded no deployment (it did not run)"
            self.log.info(reason)
            raise AirflowSkipException(reason)
        else:
            raise CloudError(f"{self.task_id}: give deployment=deploy.output, or service and region")
        return state.to_dict()


class CloudRunSetScalingOperator(CloudRunOperator):
    """Service-level min/max instances (no new revision); unchanged values are not sent."""

    template_fields: Sequence[str] = (
        *GcpBaseOperator.template_fields,
        "service",
        "region",
        "min_instances",
        "max_instances",
    )

    def __init__(
        self, *, service: str, region: str, min_instances: int | str, max_instances: int | str, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.service, self.region = service, region
        self.min_instances, self.max_instances = min_instances, max_instances

    def execute(self, context: Any) -> dict[str, Any]:
        state = self.client.set_scaling(self.service, self.region, int(self.min_instances), int(self.max_instances))
        return state.to_dict()


class CloudRunSteppedCanaryOperator(CloudRunOperator):
    """Stepped canary on a deployed revision: for each of ``steps`` (e.g. ``[10, 25, 50]``) shift that share of
    traffic, then run the whole analysis (``plan``, ``sources`` as for ``CanaryAnalysisSensor``); stop at the
    first step that does not pass. Returns ``{"decision", "reason", "failed_step", "steps": [verdict …]}``, each
    step with its times and evidence; the DAG's promote / rollback tasks act on ``decision``.

    ``deferrable=True`` (the default) hands each step's analysis to ``CanaryAnalysisTrigger`` and shifts to the
    next step when it resumes, so no worker slot waits out the rollout; ``False`` analyses in this process.
    A retry resumes at the step whose share the canary already has (``metrics.steps.resume_index``) instead
    of taking traffic back to the first step.
    """

    template_fields: Sequence[str] = (*GcpBaseOperator.template_fields, "deployment", "steps", "plan", "sources")

    def __init__(
        self,
        *,
        deployment: Any,
        steps: list[int],
        plan: dict[str, Any],
        sources: dict[str, dict[str, Any]],
        database_conn_id: str | None = None,
        tag: str = CANARY_TAG,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deployment, self.steps, self.plan, self.sources = deployment, steps, plan, sources
        self.database_conn_id, self.tag, self.deferrable = database_conn_id, tag, deferrable

    def execute(self, context: Any) -> dict[str, Any]:
        from dbopt.metrics.analysis import AnalysisPlan
        from dbopt.metrics.rules import check_sources
        from dbopt.metrics.sources import close_all, sources_from_config
        from dbopt.metrics.steps import analyse, check_steps, resume_index, run_steps
        from dbopt.triggers.canary import resolve_sources

        deployment = self._deployment(self.deployment)
        steps = check_steps(self.steps, f"{self.task_id}.steps")
        plan = AnalysisPlan.from_dict(self.plan)
        sources = sources_from_config(resolve_sources(self.sources, self.database_conn_id))
        try:
            check_sources(plan.rules, sources)
            state = self.client.describe(deployment.service, deployment.region)
            share = sum(t.percent for t in state.traffic if t.revision == deployment.new_revision)
            start_at = resume_index(steps, share)
            if start_at:
                self.log.info("the canary already has %d%%: resuming at that step (the earlier ones passed)", share)
            if not self.deferrable:

                def analyse_step(percent: int) -> dict[str, Any]:
                    return analyse(plan, sources)

                return self._decided(run_steps(steps, self._shift, analyse_step, start_at=start_at))
        finally:
            close_all(sources)  # validated; when deferred, the trigger builds its own in the triggerer
        self._defer_step(start_at, [])

    def step_complete(self, context: Any, event: Any) -> dict[str, Any]:
        """Resumed after one step's analysis: record its verdict, then defer the next step or decide."""
        from dbopt.metrics.steps import StepVerdict, check_steps, conclude, step_verdict

        if not isinstance(event, dict) or event.get("decision") not in ("promote", "rollback"):
            raise ValueError(f"{self.task_id}: the trigger sent no decision: {event!r}")
        resume = event.pop("resume", None)
        if not isinstance(resume, dict) or not {"start_at", "verdicts", "began"} <= resume.keys():
            raise ValueError(f"{self.task_id}: the trigger's event has no resume state (start_at, verdicts, began)")
        start_at, verdicts, began = resume["start_at"], resume["verdicts"], resume["began"]
        steps = check_steps(self.steps, f"{self.task_id}.steps")
        percent = steps[start_at + len(verdicts)]
        done = [*map(StepVerdict.from_dict, verdicts), step_verdict(percent, began, time.time(), event)]
        decided = conclude(steps, start_at, done)
        if decided is None:
            self.log.info("step %d%%: %s — %s", percent, event["decision"], event.get("reason", ""))
            self._defer_step(start_at, [v.to_dict() for v in done])
        return self._decided(decided)

    def _shift(self, percent: int) -> None:
        self.client.shift_traffic(self._deployment(self.deployment), percent, tag=self.tag)

    def _defer_step(self, start_at: int, verdicts: list[dict[str, Any]]) -> NoReturn:
        """Shift to the next step and hand its analysis to the triggerer; ``step_complete`` resumes."""
        from dbopt.metrics.analysis import AnalysisPlan
        from dbopt.triggers.canary import CanaryAnalysisTrigger

        plan = AnalysisPlan.from_dict(self.plan)
        began = time.time()
        self._shift(self.steps[start_at + len(verdicts)])
        trigger = CanaryAnalysisTrigger(
            plan=plan.to_dict(),
            sources=dict(self.sources),
            started_at=began,
            database_conn_id=self.database_conn_id,
            resume={"start_at": start_at, "verdicts": verdicts, "began": began},
        )
        self.defer(trigger=trigger, method_name="step_complete", timeout=timedelta(seconds=plan.backstop_s))

    def _decided(self, result: dict[str, Any]) -> dict[str, Any]:
        for verdict in result["steps"]:
            self.log.info("step %d%%: %s — %s", verdict["percent"], verdict["decision"], verdict["reason"])
        return result
