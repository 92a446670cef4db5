"""Flow parameters against the schema a deployment stored when it was registered."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from flowbus.exceptions import InvalidRunInput
from flowbus.input.run_input import check_against_schema
from flowbus.views.fields import parse_schema

#: Field kinds whose ``k=v`` value is taken as written, never parsed as JSON.
_TEXT_KINDS = {"string"}


def parse_param_pairs(pairs: Iterable[str], schema: dict[str, Any] | None) -> dict[str, Any]:
    """``k=v`` items as parameters: ``v`` is JSON unless the schema says ``k`` is a string.

    ``ValueError`` names an item that is not ``k=v``.
    """
    kinds = {f.name: f.kind for f in parse_schema(schema)} if schema else {}
    parameters: dict[str, Any] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {item!r} is not k=v")
        if kinds.get(key) in _TEXT_KINDS:
            parameters[key] = value
            continue
        try:
            parameters[key] = json.loads(value)
        except json.JSONDecodeError:
            parameters[key] = value
    return parameters


def parameter_errors(
    schema: dict[str, Any] | None, parameters: dict[str, Any]
) -> list[tuple[str, str]]:
    """``(parameter, problem)`` for each unknown, missing or ill-typed one (``[]``: they fit)."""
    if not schema:
        return []
    known = schema.get("properties")
    found: list[tuple[str, str]] = []
    if schema.get("additionalProperties") is False and isinstance(known, dict):
        names = ", ".join(known) or "none"
        found += [
            (k, f"unknown parameter (the flow takes: {names})")
            for k in parameters
            if k not in known
        ]
        parameters = {k: v for k, v in parameters.items() if k in known}
    try:
        check_against_schema(json.dumps(schema), parameters)
    except InvalidRunInput as exc:
        found += exc.errors
    return found
