"""Base operator: a Google Cloud connection, an optional project override and the lazy hook."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any, ClassVar

from airflow.sdk import BaseOperator

from dbopt.hooks.gcp import GcpBaseHook


class GcpBaseOperator(BaseOperator):
    hook_class: ClassVar[type[GcpBaseHook]]
    template_fields: Sequence[str] = ("gcp_conn_id", "project")

    def __init__(
        self,
        *,
        gcp_conn_id: str = GcpBaseHook.default_conn_name,
        project: str | None = None,
        timeout_s: float | None = None,
        poll_s: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gcp_conn_id = gcp_conn_id
        self.project = project
        self.timeout_s = timeout_s
        self.poll_s = poll_s

    @cached_property
    def hook(self) -> Any:
        options = {k: v for k, v in (("timeout_s", self.timeout_s), ("poll_s", self.poll_s)) if v is not None}
        return self.hook_class(self.gcp_conn_id, self.project, **options)
