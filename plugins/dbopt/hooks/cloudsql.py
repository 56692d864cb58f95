"""Airflow hook for Cloud SQL Admin (lazy :class:`dbopt.cloud.cloudsql.CloudSQL` client)."""

from __future__ import annotations

from functools import cached_property

from dbopt.cloud.cloudsql import CloudSQL
from dbopt.hooks.gcp import GcpBaseHook


class CloudSQLHook(GcpBaseHook):
    hook_name = "Cloud SQL Admin (dbopt)"

    @cached_property
    def client(self) -> CloudSQL:
        return CloudSQL.connect(self.settings, **self.client_options)

    def get_conn(self) -> CloudSQL:
        return self.client
