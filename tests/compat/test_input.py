"""``prefect.input`` behaviour: inputs by key, RunInput's methods, and receivers."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pydantic
import pytest

from flowbus import flow
from flowbus.client.orchestration import get_client
from flowbus.context import FlowRunContext
from flowbus.exceptions import ObjectAlreadyExists
from flowbus.flow_runs import pause_flow_run, resume_flow_run
from flowbus.input import (
    RunInput,
    aread_flow_run_input,
    create_flow_run_input,
    create_flow_run_input_from_model,
    delete_flow_run_input,
    filter_flow_run_input,
    keyset_from_base_key,
    keyset_from_paused_state,
    read_flow_run_input,
    receive_input,
    send_input,
)
from flowbus.states import Paused, Running, StateType, Suspended
from tests.runs import current_run_id, wait_until

pytestmark = pytest.mark.anyio


class Person(pydantic.BaseModel):
    name: str
    age: int


class Place(RunInput):
    city: str
    country: str = "FR"


async def new_run() -> UUID:
    return (await get_client().create_flow_run("inputs")).id


async def test_inputs_by_key_round_trip_and_filter(runtime_closed: None) -> None:
    run_id = await new_run()
    for key in ("key-1", "key-2", "different-1"):
        await create_flow_run_input(key=key, value={"n": key}, flow_run_id=run_id)
    assert await read_flow_run_input(key="key-1", flow_run_id=run_id) == {"n": "key-1"}
    assert await read_flow_run_input(key="missing", flow_run_id=run_id) is None
    found = await filter_flow_run_input(key_prefix="key", limit=5, flow_run_id=run_id)
    assert [i.key for i in found] == ["key-1", "key-2"]
    assert found[0].decoded_value == {"n": "key-1"} and found[0].flow_run_id == run_id
    rest = await filter_flow_run_input("key", limit=5, exclude_keys={"key-1"}, flow_run_id=run_id)
    assert [i.key for i in rest] == ["key-2"]
    await delete_flow_run_input(key="key-1", flow_run_id=run_id)
    assert await read_flow_run_input(key="key-1", flow_run_id=run_id) is None
    assert [i.key for i in await filter_flow_run_input("key", 5, None, run_id)] == ["key-2"]


async def test_a_taken_key_a_bad_key_and_no_run_are_refused(runtime_closed: None) -> None:
    run_id = await new_run()
    await create_flow_run_input(key="k", value=1, flow_run_id=run_id)
    with pytest.raises(ObjectAlreadyExists):
        await create_flow_run_input(key="k", value=2, flow_run_id=run_id)
    with pytest.raises(pydantic.ValidationError, match="value must only contain"):
        await create_flow_run_input(key="invalid key *@&", value=1, flow_run_id=run_id)
    with pytest.raises(RuntimeError, match="provide a flow run ID or be within a flow run"):
        await create_flow_run_input(key="k", value=1)
    assert await read_flow_run_input(key="k", flow_run_id=run_id) == 1


async def test_the_sender_of_a_model_is_the_current_flow_run(runtime_closed: None) -> None:
    outside = await new_run()
    await create_flow_run_input_from_model("who", Person(name="Bob", age=100), outside)
    assert (await filter_flow_run_input("who", flow_run_id=outside))[0].sender is None

    @flow
    async def inside() -> tuple[str | None, dict[str, object]]:
        await create_flow_run_input_from_model(key="who", model_instance=Person(name="A", age=1))
        stored = await filter_flow_run_input(key_prefix="who")
        return stored[0].sender, await aread_flow_run_input("who")

    sender, value = await inside()
    assert sender is not None and sender.endswith(current_run_id_of(sender))
    assert value == {"name": "A", "age": 1}


async def test_a_constructed_context_lets_code_outside_a_run_act_for_it(
    runtime_closed: None,
) -> None:
    run = await get_client().create_flow_run("inputs")
    with FlowRunContext.model_construct(flow_run=run, client=get_client()) as ctx:
        assert FlowRunContext.get() is ctx
        await create_flow_run_input(key="note", value="from outside")
        await Place(city="Lyon").send_to(run.id)
        assert await read_flow_run_input(key="note") == "from outside"
    assert FlowRunContext.get() is None
    assert await read_flow_run_input(key="note", flow_run_id=run.id) == "from outside"
    sent = await filter_flow_run_input(key_prefix="place", flow_run_id=run.id)
    assert [(i.decoded_value, i.sender) for i in sent] == [
        ({"city": "Lyon", "country": "FR"}, f"prefect.flow-run.{run.id}")
    ]
    with pytest.raises(TypeError, match="no field"):
        FlowRunContext.model_construct(flow_run=run, colour="blue")


def current_run_id_of(sender: str) -> str:
    return sender.rpartition(".")[2]


def test_inputs_by_key_work_from_a_sync_flow() -> None:
    @flow
    def sync_flow() -> object:
        create_flow_run_input(key="key", value="value")
        return read_flow_run_input(key="key")

    assert sync_flow() == "value"


async def test_save_load_and_keysets(runtime_closed: None) -> None:
    run_id = await new_run()
    described = Place.with_initial_data(description="Where **to**?", city="Paris")
    keyset = described.keyset_from_type()
    assert keyset == keyset_from_base_key("place")
    await described.save(keyset, flow_run_id=run_id)
    schema = await read_flow_run_input(keyset["schema"], flow_run_id=run_id)
    assert schema["properties"]["city"]["default"] == "Paris"
    assert await read_flow_run_input(keyset["description"], flow_run_id=run_id) == "Where **to**?"
    # With no response stored, load gives the initial data; with one, the response
    loaded = await described.load(keyset, flow_run_id=run_id)
    assert (loaded.city, loaded.metadata.key, loaded.metadata.receiver) == (
        "Paris",
        keyset["response"],
        run_id,
    )
    await create_flow_run_input(keyset["response"], {"city": "Oslo"}, run_id)
    assert (await Place.aload(keyset, flow_run_id=run_id)).city == "Oslo"
    stored = (await filter_flow_run_input(keyset["response"], flow_run_id=run_id))[0]
    assert Place.load_from_flow_run_input(stored).metadata.key == keyset["response"]


def test_keyset_of_a_paused_state() -> None:
    assert keyset_from_paused_state(Paused(pause_key="7"))["schema"] == "paused-7-schema"
    assert keyset_from_paused_state(Suspended(pause_key="1"))["response"] == "suspended-1-response"
    with pytest.raises(RuntimeError, match="'RUNNING' is unsupported"):
        keyset_from_paused_state(Running())


async def test_a_pause_stores_its_schema_and_response_as_inputs(runtime_closed: None) -> None:
    ids: list[str] = []
    started = asyncio.Event()

    @flow
    async def asks() -> str:
        ids.append(current_run_id())
        started.set()
        place: Place = await pause_flow_run(wait_for_input=Place)
        return place.city

    handle = asyncio.ensure_future(asks())
    await started.wait()
    run = await wait_until(ids[0], StateType.PAUSED)
    keyset = keyset_from_paused_state(run.state)
    assert (await read_flow_run_input(keyset["schema"], flow_run_id=ids[0]))["type"] == "object"
    await resume_flow_run(ids[0], run_input={"city": "Rome"})
    assert await handle == "Rome"
    assert await read_flow_run_input(keyset["response"], ids[0]) == {"city": "Rome"}


async def test_send_to_receive_and_respond_between_two_flows(runtime_closed: None) -> None:
    # The example of prefect.input.run_input's docstring: square a number and answer
    class NumberData(RunInput):
        number: int

    ready = asyncio.Event()
    receiver_ids: list[str] = []

    @flow
    async def receiver_flow() -> None:
        receiver_ids.append(current_run_id())
        ready.set()
        async for data in NumberData.receive(timeout=10):
            await data.respond(NumberData(number=data.number**2))
            return

    @flow
    async def sender_flow(receiver_flow_run_id: UUID) -> int:
        await NumberData(number=7).send_to(receiver_flow_run_id)
        ctx = FlowRunContext.get()
        assert ctx is not None
        receiver = NumberData.receive(flow_run_id=ctx.flow_run.id, timeout=10)
        squared: NumberData = await receiver.next()
        return squared.number

    receiving = asyncio.ensure_future(receiver_flow())
    await ready.wait()
    assert await sender_flow(UUID(receiver_ids[0])) == 49
    await receiving


async def test_responding_to_an_input_not_sent_by_a_flow_run_fails(runtime_closed: None) -> None:
    run_id = await new_run()
    await send_input(Place(city="Nice"), run_id)
    got = await receive_input(Place, timeout=0, flow_run_id=run_id).next()
    with pytest.raises(RuntimeError, match="not sent by a flow run"):
        await got.respond(Place(city="x"))


async def test_receiver_options(runtime_closed: None) -> None:
    run_id = await new_run()
    for n in (1, 2, 3):
        await send_input(n, run_id, sender="me")
    await send_input("text", run_id)
    # values, or models with metadata; other types are not seen
    assert [v async for v in receive_input(int, timeout=0, flow_run_id=run_id)] == [1, 2, 3]
    models = [m async for m in receive_input(int, 0, with_metadata=True, flow_run_id=run_id)]
    assert [(m.value, m.metadata.sender) for m in models] == [(1, "me"), (2, "me"), (3, "me")]
    # exclude_keys, and the iterator's own methods
    first = models[0].metadata.key
    receiver = receive_input(int, timeout=0, exclude_keys={first}, flow_run_id=run_id)
    assert await receiver.next() == 2
    assert [i.decoded_value for i in await receiver.filter_for_inputs()] == [{"value": 3}]
    with pytest.raises(TimeoutError):
        await receiver.anext()
    with pytest.raises(TimeoutError):
        async for _ in receive_input(
            int,
            0,
            raise_timeout_error=True,
            flow_run_id=run_id,
            exclude_keys={m.metadata.key for m in models},
        ):
            pass
    # a key_prefix of one's own
    await send_input(9, run_id, key_prefix="nine")
    assert [v async for v in receive_input(int, 0, key_prefix="nine", flow_run_id=run_id)] == [9]


async def test_a_json_block_saves_and_loads_by_name(runtime_closed: None) -> None:
    from flowbus.blocks.system import JSON

    with pytest.raises(ValueError, match="Unable to find block document named seen"):
        await JSON.load("seen")
    await JSON(value=["a"]).save(name="seen")
    with pytest.raises(ValueError, match="overwrite=True"):
        await JSON(value=[]).save(name="seen")
    await JSON(value=["a", "b"]).save(name="seen", overwrite=True)
    assert (await JSON.load("seen")).value == ["a", "b"]


async def test_a_sent_message_is_read_and_deleted_by_key_without_an_index(
    runtime_closed: None,
) -> None:
    from tests.runs import input_hash

    run_id = await new_run()
    await send_input(Place(city="Lyon"), run_id)
    [sent] = await filter_flow_run_input("place-auto", limit=5, flow_run_id=run_id)
    assert not any(field.startswith("at:") for field in await input_hash(run_id))
    assert await read_flow_run_input(sent.key, flow_run_id=run_id) == {
        "city": "Lyon",
        "country": "FR",
    }
    await delete_flow_run_input(sent.key, flow_run_id=run_id)
    assert await filter_flow_run_input("place-auto", limit=5, flow_run_id=run_id) == []
