"""The Jinja2 environment of the reports (templates in ``include/templates/``) and its number filters.

Filters print a dash for a figure that was not measured, so a partial record renders without
inventing a value.
"""

from __future__ import annotations

import base64
import re
from datetime import tzinfo
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from dbopt.metrics.rules import utc_time

TEMPLATES_DIR = Path(__file__).resolve().parents[3] / "include" / "templates"
MISSING = "—"


def fmt_ms(value: Any) -> str:
    if not isinstance(value, int | float):
        return MISSING
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}" if abs(value) < 100 else f"{value:,.1f}"


def fmt_num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return MISSING if value is None else str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}g}"


def fmt_bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return MISSING
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def fmt_ratio(value: Any) -> str:
    """median(after)/median(before) as a change: 0.25 → "−75.0%"."""
    if not isinstance(value, int | float):
        return MISSING
    return f"{(value - 1) * 100:+.1f}%".replace("-", "−")


def fmt_utc(value: Any) -> str:
    return utc_time(value) if isinstance(value, int | float) and not isinstance(value, bool) else MISSING


def md_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return re.sub(r"\s+", " ", str(value)).replace("|", "\\|")


def scaling_rows(actions: list[dict[str, Any]], zone: tzinfo) -> list[dict[str, Any]]:
    """The history's scaling actions as table rows: min–max before and after, the time in ``zone``."""
    return [
        a | {"before": f"{a['before_min']}–{a['before_max']}", "after": f"{a['after_min']}–{a['after_max']}",
             "at": a["recorded_at"].astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")}
        for a in actions
    ]  # fmt: skip


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=StrictUndefined,  # a template asking for a field the view lacks is a bug, not a blank
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(ms=fmt_ms, num=fmt_num, size=fmt_bytes, ratio=fmt_ratio, cell=md_cell, utc=fmt_utc)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
