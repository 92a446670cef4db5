"""The per-loop runtime: one pool per loop, however many callers race to create it."""

from __future__ import annotations

import asyncio

import pytest

from flowbus._redis.runtime import _runtimes, get_runtime, redact
from flowbus.exceptions import ConfigurationError
from flowbus.settings import get_settings

pytestmark = pytest.mark.anyio


async def test_concurrent_first_callers_share_one_runtime(runtime_closed: None) -> None:
    runtimes = await asyncio.gather(*(get_runtime() for _ in range(50)))
    assert len({id(r) for r in runtimes}) == 1


async def test_an_unreachable_server_is_a_configuration_error_and_is_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOWBUS_REDIS_URL", "redis://user:secret@127.0.0.1:1/0")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError) as caught:
        await asyncio.gather(*(get_runtime() for _ in range(3)))
    assert "secret" not in str(caught.value)
    assert asyncio.get_running_loop() not in _runtimes


def test_redact_hides_the_password() -> None:
    assert redact("rediss://u:p@host:6380/0") == "rediss://***@host:6380/0"
    assert redact("redis://host:6379") == "redis://host:6379"
