"""What every command shares: consoles, one-line errors, JSON output and the asyncio entry."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from flowbus._redis.runtime import close_runtime

T = TypeVar("T")


def _console(stderr: bool) -> Console:
    """A console that wraps nothing when it does not write to a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(
        stderr=stderr,
        soft_wrap=not tty,
        width=None if tty else 1_000_000,
        highlight=False,
    )


console = _console(stderr=False)
#: Errors are one line each, however long, and print user text verbatim (markup escaped).
errors = _console(stderr=True)


def is_terminal() -> bool:
    return console.is_terminal


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine on a fresh loop, closing its connections at the end."""

    async def main() -> T:
        try:
            return await coro
        finally:
            await close_runtime()

    return asyncio.run(main())


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on one line and exit with ``code``."""
    errors.print(f"[red]error:[/red] {escape(one_line(message))}")
    raise typer.Exit(code)


def one_line(message: str) -> str:
    return " ".join(message.split())


def to_json(value: Any) -> str:
    """JSON for machines and for values shown to people (``true``, not ``True``)."""
    return json.dumps(value, default=str, ensure_ascii=False)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str, ensure_ascii=False, indent=2) + "\n")


def relative(when: datetime, now: datetime | None = None) -> str:
    """``in 12 min`` / ``3 s ago``."""
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    span = abs(seconds)
    if span < 90:
        amount = f"{span:.0f} s"
    elif span < 90 * 60:
        amount = f"{span / 60:.0f} min"
    elif span < 36 * 3600:
        amount = f"{span / 3600:.1f} h"
    else:
        amount = f"{span / 86400:.1f} days"
    return f"in {amount}" if seconds >= 0 else f"{amount} ago"


def stamp(when: datetime) -> str:
    """An absolute time, local to the reader's machine, to the second."""
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
