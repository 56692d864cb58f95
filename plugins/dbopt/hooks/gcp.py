"""Base hook: Google Cloud settings (project, endpoint, credentials) from an Airflow connection's extra."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from dbopt.cloud.gcp import GcpSettings


class GcpBaseHook(BaseHook):
    """Extra ``{"project": "...", "endpoint": "http://127.0.0.1:PORT", "anonymous": true}`` targets a local
    stand-in; with only ``project`` (or nothing) the real API is used with Application Default Credentials."""

    conn_name_attr = "gcp_conn_id"
    default_conn_name = "google_cloud_default"
    conn_type = "google_cloud_platform"

    def __init__(self, gcp_conn_id: str = default_conn_name, project: str | None = None, **client_options: Any) -> None:
        """``project`` overrides the connection's; ``client_options`` go to the core client's constructor."""
        super().__init__()
        self.gcp_conn_id = gcp_conn_id
        self.project = project
        self.client_options = client_options

    @cached_property
    def settings(self) -> GcpSettings:
        conn = self.get_connection(self.gcp_conn_id)
        return GcpSettings.from_extra(
            conn.extra_dejson, source=f"Airflow connection {self.gcp_conn_id!r} extra", project=self.project
        )
