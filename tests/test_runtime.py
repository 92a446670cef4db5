"""The per-loop runtime: one pool per loop, however many callers race to create it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from flowbus._redis import runtime as runtime_module
from flowbus._redis.runtime import _runtimes, get_runtime, redact
from flowbus.exceptions import ConfigurationError
from flowbus.settings import Settings, get_settings

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


async def test_the_server_is_resolved_off_the_loop(
    monkeypatch: pytest.MonkeyPatch, runtime_closed: None
) -> None:
    # Given a resolver that records where it runs (finding the embedded server takes a file
    # lock and may start a process)
    threads: list[int] = []
    resolve = runtime_module.resolve_url

    def recording(settings: Settings) -> str:
        threads.append(threading.get_ident())
        return resolve(settings)

    monkeypatch.setattr(runtime_module, "resolve_url", recording)
    # When the loop opens its runtime, Then the resolver ran once, on another thread
    await asyncio.gather(get_runtime(), get_runtime())
    assert len(threads) == 1 and threads[0] != threading.get_ident()


def test_redact_hides_the_password() -> None:
    assert redact("rediss://u:p@host:6380/0") == "rediss://***@host:6380/0"
    assert redact("redis://host:6379") == "redis://host:6379"
