"""Send an ``HtmlEmail`` (HTML + inline PNG charts) through Airflow's SMTP provider.

The provider's ``SmtpHook.send_email_smtp`` attaches ``files`` as ``application/octet-stream``
attachments, which mail clients list as files instead of showing them in the HTML. This hook keeps
everything else of the provider (connection extras, SSL/STARTTLS, login, retries, ``from_email``)
and only makes the message ``multipart/related`` with ``image/png`` parts the HTML references by
``cid:``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from typing import Any

from airflow.providers.smtp.hooks.smtp import SmtpHook

from dbopt.report.mail import HtmlEmail


class InlineImageSmtpHook(SmtpHook):
    """An ``SmtpHook`` whose messages carry ``images`` as inline parts of a ``multipart/related`` body."""

    def __init__(self, smtp_conn_id: str = SmtpHook.default_conn_name, images: Sequence[MIMEImage] = ()) -> None:
        super().__init__(smtp_conn_id=smtp_conn_id)
        self.images = list(images)

    # The provider builds every message here (smtp provider 3.2: keyword arguments only).
    def _build_mime_message(self, **kwargs: Any) -> tuple[MIMEMultipart, list[str]]:
        msg, recipients = super()._build_mime_message(**{**kwargs, "files": None, "mime_subtype": "related"})
        for part in self.images:
            msg.attach(part)
        return msg, recipients


def send_html_email(
    email: HtmlEmail, to: Iterable[str], *, conn_id: str = "smtp_default", from_email: str | None = None
) -> None:
    recipients = sorted(set(to))
    if not recipients:
        raise ValueError(f"no recipients for {email.subject!r}: give at least one e-mail address")
    with InlineImageSmtpHook(conn_id, email.image_parts()) as hook:
        hook.send_email_smtp(to=recipients, subject=email.subject, html_content=email.html, from_email=from_email)
