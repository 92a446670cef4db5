"""Asking for run input field by field on a terminal, from the schema its pause stored."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import typer
from rich.markup import escape

from flowbus.cli._output import console, errors, to_json
from flowbus.views.fields import InputChoice, InputField, example_value


def _ask(label: str, default: Any, parse: Callable[[str], Any]) -> Any:
    """Prompt until ``parse`` accepts the answer (an empty answer takes the default)."""
    shown = default if isinstance(default, str) else to_json(default)
    while True:
        answer = typer.prompt(label, default=shown, show_default=True)
        try:
            return parse(answer)
        except ValueError as exc:
            errors.print(f"[red]invalid[/red] {escape(str(exc))}")


def _choice(choices: tuple[Any, ...]) -> Callable[[str], Any]:
    def parse(answer: str) -> Any:
        for choice in choices:
            if answer in (choice, to_json(choice)):
                return choice
        raise ValueError("one of " + ", ".join(to_json(c) for c in choices))

    return parse


def _json(nullable: bool) -> Callable[[str], Any]:
    def parse(answer: str) -> Any:
        if nullable and answer.strip() in ("", "null"):
            return None
        try:
            return json.loads(answer)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from exc

    return parse


_PARSERS: dict[str, Callable[[str], Any]] = {"integer": int, "number": float, "string": str}


def ask_field(f: InputField, indent: str = "") -> Any:
    """One value for ``f`` (a nested model asks for each of its fields)."""
    label = f"{indent}{f.path}"
    if f.description:
        console.print(f"{indent}[dim]{escape(f.description)}[/dim]")
    if f.kind == "object" and f.children:
        console.print(f"{escape(label)}:")
        return {c.name: ask_field(c, indent + "  ") for c in f.children}
    default = example_value(f)
    if f.kind == "boolean":
        return typer.confirm(label, default=bool(default))
    if f.kind == "enum":
        choices = "/".join(c if isinstance(c, str) else to_json(c) for c in f.choices)
        return _ask(f"{label} [{choices}]", default, _choice(f.choices))
    if f.kind in _PARSERS and not f.nullable:
        return _ask(label, "" if default is None else default, _PARSERS[f.kind])
    return _ask(f"{label} (JSON)", default, _json(f.nullable))


def ask_input(
    fields: list[InputField], values: dict[str, Any] | None = None, only: set[str] | None = None
) -> dict[str, Any]:
    """Every field's value, or only those named in ``only`` (the ones a validation refused)."""
    values = dict(values or {})
    for f in fields:
        if only is None or f.name in only:
            values[f.name] = ask_field(f)
    return values


def ask_choice(choices: list[InputChoice]) -> InputChoice:
    """Which of several input models to answer with (the first one by default)."""
    titles = tuple(c.title for c in choices)
    picked = _ask(f"input [{'/'.join(titles)}]", titles[0], _choice(titles))
    return choices[titles.index(picked)]
