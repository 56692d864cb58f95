"""Airflow hook for Cloud Run services (lazy :class:`dbopt.cloud.cloudrun.CloudRun` client)."""

from __future__ import annotations

from functools import cached_property

from dbopt.cloud.cloudrun import CloudRun
from dbopt.hooks.gcp import GcpBaseHook


class CloudRunHook(GcpBaseHook):
    hook_name = "Cloud Run (dbopt)"

    @cached_property
    def client(self) -> CloudRun:
        return CloudRun.connect(self.settings, **self.client_options)

    def get_conn(self) -> CloudRun:
        return self.client
