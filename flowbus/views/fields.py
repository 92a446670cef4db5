"""Input fields of a pause, derived from the JSON Schema it stored (what forms and prompts show).

The schema comes from Redis, so nothing here trusts its shape: an unexpected node becomes a
free-form ``any`` field instead of an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: Deepest nesting followed through ``$ref`` (a recursive model stops here).
_MAX_DEPTH = 6
_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}


@dataclass(frozen=True, slots=True)
class InputField:
    """One field of an input model; ``children`` for a nested model, ``item`` for a list."""

    name: str
    path: str
    kind: str  # string | integer | number | boolean | enum | object | array | any
    required: bool = False
    nullable: bool = False
    has_default: bool = False
    default: Any = None
    choices: tuple[Any, ...] = ()
    title: str = ""
    description: str = ""
    children: tuple[InputField, ...] = ()
    item: InputField | None = None

    @property
    def type_label(self) -> str:
        """A short type, as a Python reader would write it (``list[str] | None``)."""
        if self.kind == "enum":
            label = " | ".join(json.dumps(c) for c in self.choices)
        elif self.kind == "array":
            label = f"list[{self.item.type_label if self.item else 'Any'}]"
        elif self.kind == "object":
            label = self.title or "object"
        else:
            label = _SCALARS.get(self.kind, "Any")
        return f"{label} | None" if self.nullable else label


def _schema_root(schema: str | dict[str, Any]) -> dict[str, Any] | None:
    """A stored schema as an object, or None for text that is not one (read from Redis)."""
    try:
        root = json.loads(schema) if isinstance(schema, str) else schema
    except ValueError:
        return None
    return root if isinstance(root, dict) else None


def parse_schema(schema: str | dict[str, Any]) -> list[InputField]:
    """The top-level fields of an input schema (``[]`` for a schema that is not an object)."""
    root = _schema_root(schema)
    if root is None:
        return []
    return list(_object_fields(root, root, "", 0))


@dataclass(frozen=True, slots=True)
class InputChoice:
    """One model of a union the input may be (``Approve | Reject``): a form offers each."""

    title: str
    fields: tuple[InputField, ...]
    #: The model's own schema (with the union's ``$defs``), to name the fields it refuses.
    schema: dict[str, Any]

    def prefill(self) -> dict[str, Any]:
        return example_input(list(self.fields))


def parse_choices(schema: str | dict[str, Any]) -> list[InputChoice]:
    """The models of an input schema that is a union of objects (``anyOf``/``oneOf`` at its
    root, as a pause on ``Approve | Reject`` stores); ``[]`` for any other schema."""
    root = _schema_root(schema)
    if root is None:
        return []
    options = root.get("anyOf") or root.get("oneOf")
    if not isinstance(options, list) or len(options) < 2:
        return []
    choices = []
    for number, option in enumerate(options, 1):
        node = _resolve(option, root)
        if _kind(node)[0] != "object":
            return []
        own = {**node, "$defs": root["$defs"]} if isinstance(root.get("$defs"), dict) else node
        title = node.get("title")
        choices.append(
            InputChoice(
                title=str(title) if title is not None else f"choice {number}",
                fields=_object_fields(node, root, "", 0),
                schema=own,
            )
        )
    return choices


def _object_fields(
    node: dict[str, Any], root: dict[str, Any], prefix: str, depth: int
) -> tuple[InputField, ...]:
    props = node.get("properties")
    if not isinstance(props, dict) or depth > _MAX_DEPTH:
        return ()
    required = node.get("required")
    required_names = set(required) if isinstance(required, list) else set()
    return tuple(
        _field(str(name), f"{prefix}{name}", sub, root, name in required_names, depth)
        for name, sub in props.items()
    )


def _resolve(node: Any, root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (``#/$defs/Name``) and a one-element ``allOf``."""
    for _ in range(_MAX_DEPTH):
        if not isinstance(node, dict):
            return {}
        if isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
            node = {**node, **_resolve(node["allOf"][0], root)}
            node.pop("allOf", None)
            continue
        ref = node.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return node
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        rest = {k: v for k, v in node.items() if k != "$ref"}
        node = {**(target if isinstance(target, dict) else {}), **rest}
    return {}


def _unwrap_optional(node: dict[str, Any], root: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``anyOf: [X, null]`` (or ``type: [X, "null"]``) as X, nullable."""
    options = node.get("anyOf") or node.get("oneOf")
    if isinstance(options, list):
        real = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        if len(real) == 1 and len(real) < len(options):
            merged = {**{k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}}
            return {**_resolve(real[0], root), **merged}, True
    kind = node.get("type")
    if isinstance(kind, list) and "null" in kind:
        others = [k for k in kind if k != "null"]
        if len(others) == 1:
            return {**node, "type": others[0]}, True
    return node, False


def _kind(node: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    if isinstance(node.get("enum"), list):
        return "enum", tuple(node["enum"])
    if "const" in node:
        return "enum", (node["const"],)
    kind = node.get("type")
    if kind in _SCALARS or kind in ("object", "array"):
        return str(kind), ()
    if isinstance(node.get("properties"), dict):
        return "object", ()
    return "any", ()


def _field(
    name: str, path: str, raw: Any, root: dict[str, Any], required: bool, depth: int
) -> InputField:
    node, nullable = _unwrap_optional(_resolve(raw, root), root)
    kind, choices = _kind(node)
    children: tuple[InputField, ...] = ()
    item = None
    if kind == "object":
        children = _object_fields(node, root, f"{path}.", depth + 1)
    elif kind == "array" and depth <= _MAX_DEPTH:
        item = _field("item", f"{path}.[]", node.get("items", {}), root, True, depth + 1)
    text = node.get("description")
    title = node.get("title")
    return InputField(
        name=name,
        path=path,
        kind=kind,
        required=required,
        nullable=nullable,
        has_default="default" in node,
        default=node.get("default"),
        choices=choices,
        title=str(title) if title is not None else name,
        description=str(text) if text is not None else "",
        children=children,
        item=item,
    )


def example_value(f: InputField) -> Any:
    """A value for ``f``: its default, else a placeholder of its type (an editable start)."""
    if f.has_default:
        return f.default
    if f.nullable:
        return None
    if f.kind == "object":
        return example_input(list(f.children))
    placeholders: dict[str, Any] = {
        "string": "",
        "integer": 0,
        "number": 0,
        "boolean": False,
        "array": [],
    }
    if f.kind == "enum" and f.choices:
        return f.choices[0]
    return placeholders.get(f.kind)


def example_input(fields: list[InputField]) -> dict[str, Any]:
    """Input prefilled with every field's default (placeholders where there is none)."""
    return {f.name: example_value(f) for f in fields}
