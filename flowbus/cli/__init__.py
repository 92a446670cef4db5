"""The ``flowbus`` command line: one module per group of commands.

Every error ends as one line on stderr (``error: …``, exit 1, or 2 for a usage mistake),
never a traceback.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer
from pydantic import ValidationError
from redis.exceptions import RedisError

from flowbus.cli import control, deployments, runs, system
from flowbus.cli._output import errors, one_line
from flowbus.exceptions import FlowbusError

app = typer.Typer(
    help="flowbus: flow runs, event-driven on Redis Streams.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
for group in (runs.app, control.app, deployments.app, system.app):
    app.registered_commands += group.registered_commands
app.add_typer(deployments.deployments_app, name="deployments")
app.add_typer(system.workers_app, name="workers")
app.add_typer(system.server_app, name="server")


def package_version() -> str:
    try:
        return version("flowbus")
    except PackageNotFoundError:
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        print(f"flowbus {package_version()}")  # noqa: T201 - the command's output
        raise typer.Exit()


@app.callback()
def _root(
    version_: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """flowbus: flow runs, event-driven on Redis Streams."""


def _error(message: str, code: int) -> int:
    errors.print(f"[red]error:[/red] {one_line(message)}", markup=True, highlight=False)
    return code


def _message(exc: Exception) -> str:
    format_message = getattr(exc, "format_message", None)
    return str(format_message()) if callable(format_message) else str(exc)


def main() -> None:
    """The console script: run the app, and turn whatever it raises into one line."""
    try:
        result = app(standalone_mode=False)
    except typer.Abort:
        code = _error("aborted", 130)
    except typer.TyperException as exc:  # usage mistakes (exit 2) and the like
        context = getattr(exc, "ctx", None)
        hint = f" (see {context.command_path} --help)" if context is not None else ""
        code = _error(_message(exc) + hint, getattr(exc, "exit_code", 2))
    except FlowbusError as exc:
        code = _error(str(exc), 1)
    except ValidationError as exc:  # a FLOWBUS_* setting of the wrong type
        code = _error(f"invalid setting: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", 2)
    except (RedisError, OSError, ValueError) as exc:
        code = _error(f"{type(exc).__name__}: {exc}", 1)
    else:
        code = result if isinstance(result, int) else 0
    sys.exit(code)
