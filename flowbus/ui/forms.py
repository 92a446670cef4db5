"""Form posts as run input or flow parameters, guided by the fields of the stored schema.

Names are dotted paths (``address.city``, ``items.0.qty``), the paths validation errors use,
so each error lands next to its field. A value that does not parse is passed on as typed:
the schema validation then names the field, and the form shows it again as it was.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flowbus.views.fields import InputField

_MISSING: Any = object()


def _number(raw: str, kind: str) -> Any:
    try:
        return int(raw) if kind == "integer" else float(raw)
    except ValueError:
        return raw


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _indices(form: Mapping[str, str], path: str) -> list[int]:
    prefix = f"{path}."
    found = {
        int(head)
        for key in form
        if key.startswith(prefix) and (head := key[len(prefix) :].split(".")[0]).isdigit()
    }
    return sorted(found)


def _scalar(f: InputField, raw: str | None) -> Any:
    if raw is None:
        return _MISSING
    if raw == "" and f.kind != "string":
        return None if f.nullable else (_MISSING if f.has_default else raw)
    if raw == "" and f.nullable:
        return None
    if f.kind in ("integer", "number"):
        return _number(raw, f.kind)
    if f.kind in ("enum", "any"):
        return _json_or_text(raw)
    return raw


def field_value(f: InputField, path: str, form: Mapping[str, str]) -> Any:
    """The value the form holds for ``f`` at ``path`` (``_MISSING``: leave it out)."""
    if f.kind == "object" and f.children:
        return object_value(list(f.children), form, f"{path}.")
    if f.kind == "array" and f.item is not None:
        item = f.item
        values = [field_value(item, f"{path}.{i}", form) for i in _indices(form, path)]
        return [v for v in values if v is not _MISSING]
    if f.kind == "boolean":
        return path in form
    return _scalar(f, form.get(path))


def object_value(
    fields: list[InputField], form: Mapping[str, str], prefix: str = ""
) -> dict[str, Any]:
    values = {f.name: field_value(f, f"{prefix}{f.name}", form) for f in fields}
    return {name: value for name, value in values.items() if value is not _MISSING}


def errors_by_field(errors: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Validation errors by field path ("" for the input as a whole)."""
    found: dict[str, list[str]] = {}
    for path, message in errors:
        found.setdefault(path, []).append(message)
    return found
