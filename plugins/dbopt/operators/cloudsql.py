"""Cloud SQL operators: on-demand backup (wait for it), list backups, change the machine tier."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dbopt.cloud.cloudsql import CloudSQL
from dbopt.hooks.cloudsql import CloudSQLHook
from dbopt.operators.gcp import GcpBaseOperator


class CloudSQLOperator(GcpBaseOperator):
    hook_class = CloudSQLHook
    template_fields: Sequence[str] = (*GcpBaseOperator.template_fields, "instance")

    def __init__(self, *, instance: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.instance = instance

    @property
    def client(self) -> CloudSQL:
        return self.hook.client


class CloudSQLBackupOperator(CloudSQLOperator):
    """backupRuns.insert, then wait for the operation (retrying if another operation holds the instance).

    The description names the DAG run (default ``dbopt <dag_id> <run_id>``), so a retried task finds the
    backup its first attempt started and waits for it instead of starting a second one.
    """

    template_fields: Sequence[str] = (*CloudSQLOperator.template_fields, "description")

    def __init__(self, *, description: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.description = description

    def execute(self, context: Any) -> dict[str, Any]:
        description = self.description or f"dbopt {self.dag_id} {context['run_id']}"
        return self.client.backup(self.instance, description).to_dict()


class CloudSQLListBackupsOperator(CloudSQLOperator):
    """The most recent backup runs, newest first."""

    def __init__(self, *, limit: int = 20, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit = limit

    def execute(self, context: Any) -> list[dict[str, Any]]:
        return [run.to_dict() for run in self.client.list_backups(self.instance, self.limit)]


class CloudSQLSetTierOperator(CloudSQLOperator):
    """instances.patch ``settings.tier`` and wait. The instance RESTARTS; an unchanged tier is a no-op."""

    template_fields: Sequence[str] = (*CloudSQLOperator.template_fields, "tier")

    def __init__(self, *, tier: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tier = tier

    def execute(self, context: Any) -> dict[str, Any]:
        return self.client.set_tier(self.instance, self.tier).to_dict()
