"""What a pause waits for: one input type, or a union of ``RunInput`` models to choose from.

A union (``Approve | Reject``) stores an ``anyOf`` schema, so a form can offer the choice; the
input is loaded as the first model of the union, in its order, that it validates against.
Each pause also keeps the input type's identity with its key, so a re-run that reaches a
fired key waiting for another type is told (:class:`NonDeterminismError`).
"""

from __future__ import annotations

import functools
import json
import types
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError

from flowbus.exceptions import InvalidRunInput, NonDeterminismError
from flowbus.input.run_input import RunInput, load_input, run_input_subclass_from_type, schema_json

#: The identity of "no input" (a pause without ``wait_for_input``, a sleep).
NO_INPUT = "None"


@dataclass(frozen=True)
class Expected:
    """The models a pause accepts (one, or the members of a union) and their identity."""

    models: tuple[type[RunInput], ...]
    identity: str

    @classmethod
    def of(cls, wait_for_input: Any) -> Expected | None:
        """``None`` for a pause without input."""
        if wait_for_input is None:
            return None
        members = _model_union(wait_for_input)
        if members:
            models = tuple(run_input_subclass_from_type(m) for m in members)
            return cls(models, " | ".join(identity_of(m) for m in members))
        return cls((run_input_subclass_from_type(wait_for_input),), identity_of(wait_for_input))

    def schema(self) -> str:
        """The JSON schema stored with the pause: the model's, or ``anyOf`` the union's."""
        return _schema_of(self.models)

    def description(self) -> str:
        return " | ".join(m._description for m in self.models if m._description)

    def load(self, data: Any, key: str) -> Any:
        """The input as the first model it validates against; else the first model's error."""
        first: Exception | None = None
        for model in self.models:
            try:
                return load_input(model, data, key)
            except (InvalidRunInput, ValidationError) as exc:
                first = first or exc
        assert first is not None
        raise first


@functools.lru_cache(maxsize=256)
def _schema_of(models: tuple[type[RunInput], ...]) -> str:
    """The schema of one model, or of a union of models, made once per models (pydantic makes
    a schema anew at each call: ~100 µs for a one-field model, at every pause)."""
    if len(models) == 1:
        return schema_json(models[0])
    union: Any = Union[models]  # noqa: UP007 - built from a tuple at run time
    return json.dumps(TypeAdapter(union).json_schema())


def identity_of(input_type: Any) -> str:
    """``module.QualName`` of a class (of the class it was derived from, for one made by
    ``with_initial_data``), else the type's text (``list[int]``)."""
    if isinstance(input_type, type):
        for klass in input_type.__mro__:
            if not klass.__module__.startswith("flowbus.input"):
                return f"{klass.__module__}.{klass.__qualname__}"
    return repr(input_type).removeprefix("typing.")


def check_same_type(key: str, fired_with: str, expected: Expected | None) -> None:
    """Raise :class:`NonDeterminismError` if ``key`` fired for another input type."""
    now = expected.identity if expected else NO_INPUT
    if fired_with and fired_with != now:
        raise NonDeterminismError(key, fired_with, now)


def _model_union(wait_for_input: Any) -> tuple[Any, ...]:
    """The members of a union of models (``()`` for anything else)."""
    if get_origin(wait_for_input) not in (Union, types.UnionType):
        return ()
    members = get_args(wait_for_input)
    if all(isinstance(m, type) and issubclass(m, BaseModel) for m in members):
        return members
    return ()
