"""Typed run input (``prefect.input.run_input``): ``RunInput`` models, their keysets, JSON
schema, validation and loading, and sending/receiving them between runs."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar, cast
from uuid import UUID

import jsonschema
from pydantic import BaseModel, ConfigDict, PrivateAttr, create_model

from flowbus._core.bridge import in_async_context, run_blocking
from flowbus._core.codec import loads_json
from flowbus.exceptions import FlowbusError, InvalidRunInput
from flowbus.input.actions import (
    SENDER_PREFIXES,
    acreate_flow_run_input,
    aread_flow_run_input,
    ensure_flow_run_id,
)
from flowbus.models import FlowRunInput
from flowbus.states import State

if TYPE_CHECKING:
    from flowbus.input.messages import InputReceiver

T = TypeVar("T")


#: The keys of one pause's (or one type's) schema, description and response inputs.
Keyset = dict[str, str]


def keyset_from_base_key(base_key: str) -> Keyset:
    """The schema, description and response keys under ``base_key``."""
    return {
        "description": f"{base_key}-description",
        "response": f"{base_key}-response",
        "schema": f"{base_key}-schema",
    }


def keyset_from_paused_state(state: State) -> Keyset:
    """The keyset of a Paused (or Suspended) state's input: ``paused-<pause key>-…``."""
    if not state.is_paused():
        raise RuntimeError(f"{state.type.value!r} is unsupported.")
    return keyset_from_base_key(f"{(state.name or '').lower()}-{state.state_details.pause_key}")


def _dual(afn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> Any:
    """Await ``afn`` in async code, block on it in sync code (Prefect's sync-compatible)."""
    if in_async_context():
        return afn(*args, **kwargs)
    return run_blocking(afn, *args, **kwargs)


class RunInputMetadata(BaseModel):
    """Where an input came from: its key, sender and receiving run."""

    key: str
    sender: str | None = None
    receiver: UUID | None = None


class RunInput(BaseModel):
    """Base of every input a run waits for or receives; extra keys are invalid.

    The methods without ``a`` are awaitable in async code and blocking in sync code.
    """

    model_config = ConfigDict(extra="forbid")
    #: Shown to whoever resumes (Markdown); set through :meth:`with_initial_data`.
    _description: ClassVar[str | None] = None
    _metadata: RunInputMetadata | None = PrivateAttr(default=None)

    @property
    def metadata(self) -> RunInputMetadata:
        """Key, sender and receiver of an input that was received or loaded."""
        if self._metadata is None:
            raise AttributeError(f"{type(self).__name__} was not received or loaded from a run")
        return self._metadata

    @classmethod
    def keyset_from_type(cls) -> Keyset:
        return keyset_from_base_key(cls.__name__.lower())

    @classmethod
    def with_initial_data(cls, description: str | None = None, **defaults: Any) -> type[Self]:
        """A subclass whose fields default to ``defaults`` (prefilled forms, resumes w/o input)."""
        fields: dict[str, Any] = {}
        for name, value in defaults.items():
            field = cls.model_fields.get(name)
            fields[name] = (field.annotation if field else type(value), value)
        model: type[Self] = create_model(cls.__name__, __base__=cls, **fields)
        if description is not None:
            model._description = description
        return model

    @classmethod
    async def asave(cls, keyset: Keyset, flow_run_id: UUID | str | None = None) -> None:
        """Store this model's JSON schema (and description) under ``keyset``."""
        await acreate_flow_run_input(keyset["schema"], cls.model_json_schema(), flow_run_id)
        if cls._description:
            await acreate_flow_run_input(keyset["description"], cls._description, flow_run_id)

    @classmethod
    def save(cls, keyset: Keyset, flow_run_id: UUID | str | None = None) -> Any:
        return _dual(cls.asave, keyset, flow_run_id)

    @classmethod
    async def aload(cls, keyset: Keyset, flow_run_id: UUID | str | None = None) -> Any:
        """The response stored under ``keyset`` as an instance (defaults if there is none)."""
        run_id = ensure_flow_run_id(flow_run_id)
        value = await aread_flow_run_input(keyset["response"], flow_run_id=run_id)
        instance = cls(**value) if value else cls()
        instance._metadata = RunInputMetadata(key=keyset["response"], receiver=UUID(str(run_id)))
        return instance

    @classmethod
    def load(cls, keyset: Keyset, flow_run_id: UUID | str | None = None) -> Any:
        return _dual(cls.aload, keyset, flow_run_id)

    @classmethod
    def load_from_flow_run_input(cls, flow_run_input: FlowRunInput) -> Self:
        """An instance from a stored input, with its key, sender and receiver."""
        instance = cls(**flow_run_input.decoded_value)
        instance._metadata = RunInputMetadata(
            key=flow_run_input.key,
            sender=flow_run_input.sender,
            receiver=flow_run_input.flow_run_id,
        )
        return instance

    async def asend_to(
        self, flow_run_id: UUID | str, sender: str | None = None, key_prefix: str | None = None
    ) -> None:
        """Send this input to a run (see ``send_input``)."""
        from flowbus.input.messages import asend_input  # messages builds on this module

        await asend_input(self, flow_run_id, sender=sender, key_prefix=key_prefix)

    def send_to(
        self, flow_run_id: UUID | str, sender: str | None = None, key_prefix: str | None = None
    ) -> Any:
        return _dual(self.asend_to, flow_run_id, sender, key_prefix)

    async def arespond(
        self, run_input: Any, sender: str | None = None, key_prefix: str | None = None
    ) -> None:
        """Send ``run_input`` back to the flow run that sent this input."""
        origin = (self._metadata.sender if self._metadata else None) or ""
        run_id = next(
            (origin.removeprefix(p) for p in SENDER_PREFIXES if origin.startswith(p)), None
        )
        if not run_id:
            raise RuntimeError("Cannot respond to an input that was not sent by a flow run.")
        from flowbus.input.messages import asend_input  # messages builds on this module

        await asend_input(run_input, UUID(run_id), sender=sender, key_prefix=key_prefix)

    def respond(
        self, run_input: Any, sender: str | None = None, key_prefix: str | None = None
    ) -> Any:
        return _dual(self.arespond, run_input, sender, key_prefix)

    @classmethod
    def receive(
        cls,
        timeout: float | None = 3600,
        poll_interval: float = 10,
        raise_timeout_error: bool = False,
        exclude_keys: set[str] | None = None,
        key_prefix: str | None = None,
        flow_run_id: UUID | str | None = None,
        with_metadata: bool = False,
    ) -> InputReceiver:
        """The inputs of this type sent to a run (see ``receive_input``)."""
        from flowbus.input.messages import receive_input  # messages builds on this module

        return receive_input(
            cls,
            timeout=timeout,
            raise_timeout_error=raise_timeout_error,
            exclude_keys=exclude_keys,
            key_prefix=key_prefix,
            flow_run_id=flow_run_id,
            with_metadata=with_metadata,
        )

    @classmethod
    def subclass_from_base_model_type(cls, model_cls: type[BaseModel]) -> type[RunInput]:
        """A ``RunInput`` subclass with the fields of ``model_cls`` (named ``<Name>RunInput``)."""
        return run_input_subclass_from_type(model_cls)


class AutomaticRunInput(RunInput):
    """Base of the one-field (``value``) model wrapping a non-model input type."""

    @classmethod
    async def aload(cls, keyset: Keyset, flow_run_id: UUID | str | None = None) -> Any:
        """The response's ``value`` itself."""
        instance = await super().aload(keyset, flow_run_id)
        return getattr(instance, "value")  # noqa: B009 - a field of a model made at run time

    @classmethod
    def subclass_from_type(cls, _type: Any) -> type[RunInput]:
        """The ``value`` model of ``_type`` (named ``<type>AutomaticRunInput``)."""
        return run_input_subclass_from_type(_type)


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


def run_input_subclass_from_type(wait_for_input: Any) -> type[RunInput]:
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


@functools.lru_cache(maxsize=256)
def _validator(schema: str) -> jsonschema.Draft202012Validator:
    """The validator of a stored schema text, built once (pauses of a flow share schemas)."""
    return jsonschema.Draft202012Validator(_schema(schema))


def check_against_schema(schema: str, data: Any) -> None:
    """Validate resume input with JSON Schema; :class:`InvalidRunInput` lists every field."""
    validator = _validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise InvalidRunInput([(_path(e.absolute_path), e.message) for e in errors])


def schema_accepts(schema: str, data: Any) -> bool:
    """Whether ``data`` is valid resume input for ``schema`` (False for a schema that is none)."""
    try:
        return bool(_validator(schema).is_valid(data))
    except FlowbusError:
        return False


def schema_digest(schema: str) -> str:
    """The SHA-1 (hex) of a stored schema's text: how a resume names the schema it checked
    its input against (``resume.lua`` compares it with its pause's)."""
    return hashlib.sha1(schema.encode(), usedforsecurity=False).hexdigest()


def accepts_empty(schema: str) -> bool:
    """True if ``{}`` satisfies ``schema`` (every field has a default)."""
    return _validator(schema).is_valid({})


def _schema(raw: str) -> Any:
    """A stored schema, parsed with bounds (it is read from Redis)."""
    return loads_json(raw, what="the stored input schema")


def load_input(model: type[RunInput], data: Any, key: str, receiver: UUID | None = None) -> Any:
    """Parse stored input with the real type (custom validators run here, in the flow).

    A failing validator raises ``pydantic.ValidationError`` as in Prefect, so a flow can
    catch it and pause again for a better input.
    """
    value = model.model_validate(data if data is not None else {})
    value._metadata = RunInputMetadata(key=key, receiver=receiver)
    if isinstance(value, AutomaticRunInput):
        return getattr(value, "value")  # noqa: B009 - a field of a model made at run time
    return value


#: Names Prefect users import from this module but that live in :mod:`flowbus.input.messages`
#: (which builds on this one, so they are looked up on first use).
_FROM_MESSAGES = {"GetAutomaticInputHandler", "GetInputHandler", "receive_input", "send_input"}


def __getattr__(name: str) -> Any:
    if name in _FROM_MESSAGES:
        from flowbus.input import messages

        return getattr(messages, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
