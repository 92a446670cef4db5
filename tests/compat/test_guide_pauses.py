"""The pause examples of Prefect's interactive-workflows guide, with flowbus imports.

Each flow below is the guide's (waiting for a built-in type, for a ``BaseModel``, for a
``RunInput`` with initial data and a Markdown description, and the custom-validation loop);
the test resumes it as a user would from the UI, with the input the form would send.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

import pydantic
import pytest
from pydantic import BaseModel

from flowbus import flow
from flowbus.client.orchestration import get_client
from flowbus.exceptions import InvalidRunInput
from flowbus.flow_runs import pause_flow_run, resume_flow_run
from flowbus.input import RunInput, judging, read_flow_run_input
from flowbus.logging import get_run_logger
from flowbus.models import FlowRun
from flowbus.states import StateType
from tests.runs import launch, wait_until

pytestmark = pytest.mark.anyio

greetings: list[str] = []


async def paused_run_of(flow_name: str, key: str = "1") -> FlowRun:
    """The run of ``flow_name`` once it is paused under ``key`` (test-side wait)."""
    while True:
        runs = await get_client().read_flow_runs(flow_name=flow_name)
        if runs:
            return await wait_until(runs[0].id, StateType.PAUSED, key=key)
        await asyncio.sleep(0.005)


@flow
def greet_user_str() -> None:
    logger = get_run_logger()

    user = pause_flow_run(wait_for_input=str)

    logger.info(f"Hello, {user}!")
    greetings.append(f"Hello, {user}!")


class User(BaseModel):
    name: str
    age: int


@flow
async def greet_user_model() -> None:
    logger = get_run_logger()

    user = await pause_flow_run(wait_for_input=User)

    logger.info(f"Hello, {user.name}!")
    greetings.append(f"Hello, {user.name}!")


class UserInput(RunInput):
    name: str
    age: int


@flow
async def greet_user_described() -> None:
    logger = get_run_logger()
    current_date = datetime.now().strftime("%B %d, %Y")

    description_md = f"""
**Welcome to the User Greeting Flow!**
Today's Date: {current_date}

Please enter your details below:
- **Name**: What should we call you?
- **Age**: Just a number, nothing more.
"""

    user_input = await pause_flow_run(
        wait_for_input=UserInput.with_initial_data(description=description_md, name="anonymous")
    )

    if user_input.name == "anonymous":
        logger.info("Hello, stranger!")
        greetings.append("Hello, stranger!")
    else:
        logger.info(f"Hello, {user_input.name}!")
        greetings.append(f"Hello, {user_input.name}!")


class ShirtOrder(RunInput):
    size: Literal["small", "medium", "large", "xlarge"]
    color: Literal["red", "green", "black"]

    @pydantic.model_validator(mode="after")
    def validate_age(self) -> ShirtOrder:
        if self.color == "green" and self.size == "small":
            raise ValueError("Green is only in-stock for medium, large, and XL sizes.")

        return self


@flow
def get_shirt_order() -> None:
    logger = get_run_logger()
    shirt_order = None

    while shirt_order is None:
        try:
            shirt_order = pause_flow_run(wait_for_input=ShirtOrder)
        except pydantic.ValidationError as exc:
            logger.error(f"Invalid size and color combination: {exc}")

    logger.info(f"Shirt order: {shirt_order.size}, {shirt_order.color}")
    greetings.append(f"Shirt order: {shirt_order.size}, {shirt_order.color}")


@pytest.fixture(autouse=True)
def clear_greetings() -> None:
    greetings.clear()


async def resume(flow_name: str, run_input: dict[str, Any], key: str = "1") -> FlowRun:
    run = await paused_run_of(flow_name, key)
    await resume_flow_run(run.id, run_input=run_input)
    return run


async def test_waiting_for_a_built_in_type(runtime_closed: None, background_closed: None) -> None:
    handle = launch(greet_user_str)
    await resume("greet-user-str", {"value": "andrew"})
    assert (await handle).is_completed() and greetings == ["Hello, andrew!"]


async def test_waiting_for_a_base_model(runtime_closed: None) -> None:
    handle = launch(greet_user_model)
    await resume("greet-user-model", {"name": "ada", "age": 36})
    assert (await handle).is_completed() and greetings == ["Hello, ada!"]


async def test_initial_data_and_a_markdown_description(runtime_closed: None) -> None:
    handle = launch(greet_user_described)
    run = await paused_run_of("greet-user-described")
    description = await read_flow_run_input("paused-1-description", flow_run_id=run.id)
    schema = await read_flow_run_input("paused-1-schema", flow_run_id=run.id)
    assert "**Welcome to the User Greeting Flow!**" in description
    assert schema["properties"]["name"]["default"] == "anonymous"
    await resume_flow_run(run.id, run_input={"age": 3})  # the form's prefilled name kept
    assert (await handle).is_completed() and greetings == ["Hello, stranger!"]


async def test_the_custom_validation_loop(runtime_closed: None, background_closed: None) -> None:
    # the paused process judges the input with the model's validator before the resume, so
    # the bad order is refused to the resumer and the run stays paused under the same key
    handle = launch(get_shirt_order)
    with pytest.raises(InvalidRunInput, match="Green is only in-stock"):
        await resume("get-shirt-order", {"size": "small", "color": "green"}, key="1")
    await resume("get-shirt-order", {"size": "large", "color": "green"}, key="1")
    assert (await handle).is_completed()
    assert greetings == ["Shirt order: large, green"]


async def test_the_custom_validation_loop_when_no_owner_judges_in_time(
    monkeypatch: pytest.MonkeyPatch, runtime_closed: None, background_closed: None
) -> None:
    # with only the JSON schema judging, the loop of the guide pauses again, as in Prefect
    monkeypatch.setattr(judging, "OWNER_WAIT", 0)
    handle = launch(get_shirt_order)
    await resume("get-shirt-order", {"size": "small", "color": "green"}, key="1")
    await resume("get-shirt-order", {"size": "large", "color": "green"}, key="2")
    assert (await handle).is_completed()
    assert greetings == ["Shirt order: large, green"]
