"""A pause's Markdown description shows raw HTML as text, on the terminal and on the page:
nothing of it is dropped, and nothing of it runs."""

from __future__ import annotations

import asyncio

import pytest

from flowbus import RunInput, StateType, flow, pause_flow_run
from flowbus.ui.render import markdown
from tests.runs import current_run_id, launch, wait_for_ids, wait_until
from tests.test_cli import cli

pytestmark = pytest.mark.anyio

DESCRIPTION = (
    '# Check\n\n**Ship** it? <script>alert(1)</script> <img src=x onerror="alert(2)">\n\n'
    "<div>a block</div>\n"
)


class Answer(RunInput):
    ok: bool = True


STARTED: list[str] = []


@flow(name="md-described")
async def described() -> None:
    STARTED.append(current_run_id())
    asked = Answer.with_initial_data(description=DESCRIPTION)
    await pause_flow_run(wait_for_input=asked, timeout=300)


async def test_the_terminal_shows_raw_html_as_text(runtime_closed: None) -> None:
    STARTED.clear()
    handle = launch(described)
    try:
        [run_id] = await wait_for_ids(STARTED, 1)
        await wait_until(run_id, StateType.PAUSED)
        done = await cli("inspect", run_id)
        assert done.returncode == 0, done
        assert 'Ship it? <script>alert(1)</script> <img src=x onerror="alert(2)">' in done.stdout
        assert "<div>a block</div>" in done.stdout
        assert "**" not in done.stdout  # the Markdown itself is rendered
    finally:
        handle.cancel()
        await asyncio.gather(handle, return_exceptions=True)


def test_the_page_escapes_raw_html() -> None:
    html = str(markdown(DESCRIPTION))
    assert "<strong>Ship</strong>" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html
    assert "&lt;div&gt;a block&lt;/div&gt;" in html
    assert "<script" not in html and "<img" not in html and "<div" not in html
