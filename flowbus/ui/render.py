"""Templates and the filters they use: every string is escaped, Markdown is rendered safely."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup

HERE = Path(__file__).resolve().parent
#: CommonMark with raw HTML off: a ``<script>`` in a description is shown as text.
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False})


def markdown(text: str) -> Markup:
    """Markdown as HTML; raw HTML escaped and unsafe link schemes refused by markdown-it."""
    return Markup(_MARKDOWN.render(text or ""))


def as_json(value: Any) -> str:
    """JSON text (escaped by the template like any other string)."""
    return json.dumps(value, default=str, ensure_ascii=False)


def epoch_ms(when: datetime | None) -> str:
    return "" if when is None else str(int(when.timestamp() * 1000))


def stamp(when: datetime | None) -> str:
    return "" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(markdown=markdown, as_json=as_json, epoch_ms=epoch_ms, stamp=stamp)
    return env
