"""Markdown on a terminal, with raw HTML shown as text.

rich's renderer parses with raw HTML on and then drops the HTML it finds, so a description
holding ``<script>`` would lose words silently. Parsed with raw HTML off, such markup is text
(as the web page escapes it) and is printed as written.
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from rich.markdown import Markdown

_PARSER = MarkdownIt("commonmark", {"html": False}).enable("strikethrough").enable("table")


class TextMarkdown(Markdown):
    """rich's ``Markdown``, its tokens from a parser that keeps raw HTML as text."""

    def __init__(self, markup: str) -> None:
        super().__init__(markup, hyperlinks=False)
        self.parsed = _PARSER.parse(markup)
