"""Airflow hook for Cloud Run services (lazy :class:`dbopt.cloud.cloudrun.CloudRun` client)."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from dbopt.hooks.gcp import GcpBaseHook

if TYPE_CHECKING:
    from dbopt.cloud.cloudrun import CloudRun


class CloudRunHook(GcpBaseHook):
    hook_name = "Cloud Run (dbopt)"

    @cached_property
    def client(self) -> CloudRun:
        from dbopt.cloud.cloudrun import CloudRun  # google-cloud-run loads when first used, not at DAG parse

        return CloudRun.connect(self.settings, **self.client_options)

    def get_conn(self) -> CloudRun:
        return self.client
