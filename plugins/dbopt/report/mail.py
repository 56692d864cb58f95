"""An HTML e-mail with inline images, as plain data (the Airflow layer sends it through SMTP).

Mail clients show an image inline only when it is a part of a ``multipart/related`` message with a
``Content-ID`` the HTML references as ``cid:…``; data: URIs are blocked by most clients, and plain
attachments are shown as files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.mime.image import MIMEImage


def content_id(name: str) -> str:
    """A Content-ID made of safe characters (the same string goes into ``cid:`` in the HTML)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") + "@dbopt"


@dataclass(frozen=True)
class HtmlEmail:
    subject: str
    html: str
    images: dict[str, bytes] = field(default_factory=dict)  # Content-ID → PNG bytes

    def image_parts(self) -> list[MIMEImage]:
        parts = []
        for cid, png in self.images.items():
            part = MIMEImage(png, "png")
            part.add_header("Content-ID", f"<{cid}>")
            part.add_header("Content-Disposition", "inline", filename=cid.split("@")[0] + ".png")
            parts.append(part)
        return parts
