"""Typed run input: ``RunInput`` models, their JSON schema, validation and loading."""

from __future__ import annotations

import json
from typing import Any, ClassVar, cast

import jsonschema
from pydantic import BaseModel, ConfigDict, PrivateAttr, create_model

from flowbus.exceptions import InvalidRunInput


class RunInputMetadata(BaseModel):
    """Where an input came from: its key, sender and receiving run."""

    key: str
    sender: str | None = None
    receiver: str | None = None


class RunInput(BaseModel):
    """Base of every input a run waits for; extra keys are invalid."""

    model_config = ConfigDict(extra="forbid")
    description: ClassVar[str | None] = None
    _metadata: RunInputMetadata | None = PrivateAttr(default=None)

    @property
    def metadata(self) -> RunInputMetadata | None:
        return self._metadata

    @classmethod
    def with_initial_data(cls, description: str | None = None, **defaults: Any) -> type[RunInput]:
        """A subclass whose fields default to ``defaults`` (prefilled forms, resumes w/o input)."""
        fields: dict[str, Any] = {}
        for name, value in defaults.items():
            field = cls.model_fields.get(name)
            if field is None:
                raise ValueError(f"{cls.__name__} has no field {name!r}")
            fields[name] = (field.annotation, value)
        model: type[RunInput] = create_model(cls.__name__, __base__=cls, **fields)
        model.description = description
        return model


class AutomaticRunInput(RunInput):
    """Marker base of the one-field (``value``) model wrapping a non-model input type."""


def model_name(input_type: Any) -> str:
    """The name Prefect gives the model of ``input_type`` (``PersonRunInput``,
    ``intAutomaticRunInput``, ``tupleAutomaticRunInput`` for ``Tuple[str, str]``)."""
    if isinstance(input_type, type) and issubclass(input_type, RunInput):
        return input_type.__name__
    if isinstance(input_type, type) and issubclass(input_type, BaseModel):
        return f"{input_type.__name__}RunInput"
    type_name = getattr(input_type, "__name__", getattr(input_type, "_name", None))
    return f"{str(type_name or '').lower()}AutomaticRunInput"


def default_prefix(input_type: Any) -> str:
    """The key prefix of a type's messages unless one is given; sender and receiver of a
    generic alias agree because both use the alias's name (``list[int]`` → ``list``)."""
    return f"{model_name(input_type).lower()}-auto"


def run_input_type(wait_for_input: Any) -> type[RunInput]:
    """The ``RunInput`` model for ``wait_for_input``: itself, upgraded, or wrapped in ``value``."""
    if isinstance(wait_for_input, type) and issubclass(wait_for_input, RunInput):
        return wait_for_input
    if isinstance(wait_for_input, type) and issubclass(wait_for_input, BaseModel):
        upgraded: type[RunInput] = create_model(
            model_name(wait_for_input),
            __base__=cast("tuple[type[RunInput], ...]", (wait_for_input, RunInput)),
        )
        return upgraded
    wrapped: type[RunInput] = create_model(
        model_name(wait_for_input), __base__=AutomaticRunInput, value=(wait_for_input, ...)
    )
    return wrapped


def schema_json(model: type[RunInput]) -> str:
    """The JSON schema stored with a pause (what resumers validate against)."""
    return json.dumps(model.model_json_schema())


def _path(parts: Any) -> str:
    return ".".join(str(p) for p in parts)


def check_against_schema(schema: str, data: Any) -> None:
    """Validate resume input with JSON Schema; :class:`InvalidRunInput` lists every field."""
    validator = jsonschema.Draft202012Validator(json.loads(schema))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise InvalidRunInput([(_path(e.absolute_path), e.message) for e in errors])


def accepts_empty(schema: str) -> bool:
    """True if ``{}`` satisfies ``schema`` (every field has a default)."""
    return jsonschema.Draft202012Validator(json.loads(schema)).is_valid({})


def load_input(model: type[RunInput], data: Any, key: str) -> Any:
    """Parse stored input with the real type (custom validators run here, in the flow).

    A failing validator raises ``pydantic.ValidationError`` as in Prefect, so a flow can
    catch it and pause again for a better input.
    """
    value = model.model_validate(data if data is not None else {})
    value._metadata = RunInputMetadata(key=key)
    if isinstance(value, AutomaticRunInput):
        return getattr(value, "value")  # noqa: B009 - a field of a model made at run time
    return value
