"""This process as the holder of runs: one name and one heartbeat for every run it holds.

A process holds a run while it executes it (a worker, or a plain script calling a flow) or is
blocked in its in-process pause. It beats once per interval for all of them, whatever their
number: in each queue it holds runs of, ``<p>:{q}:holders`` maps its name to the time (ms,
clock of the node holding that hash) its lease ends, and so does ``<p>:holders`` (one entry
per process, so workers learn that a holder ended without reading every queue's hash); a
worker also refreshes its entry in ``<p>:workers``. The beat runs on a thread of its own,
with its own event loop and clients, so code that blocks an event loop (a sync subflow called
from an async flow, a CPU-bound task) does not lapse the lease of runs that are alive. The
scripts read the lease in the run's own slot: a run whose holder's lease ended is answered
for at once (resume, cancel) and ended by any sweeper.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from flowbus._redis.connect import by_slot, open_client
from flowbus._redis.keys import Keys
from flowbus._redis.url_file import prepared
from flowbus.settings import Settings

log = logging.getLogger(__name__)

#: Writes the beats of keys of one slot with the clock of their node: ``now + lease`` (a
#: holder's lease end), or ``now`` for a worker's beat (lease 0); ARGV: name, a lease per key.
_BEAT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i, key in ipairs(KEYS) do redis.call('HSET', key, ARGV[1], now + tonumber(ARGV[i + 1])) end
"""
#: Seconds a caller waits for the heartbeat's thread to beat or to drop its entries.
_WAIT = 10.0


@dataclass(slots=True)
class _Server:
    """The keys beaten on one server, and the client they are beaten through."""

    url: str
    settings: Settings
    #: Holder hashes (value: end of the lease) by how many users hold them.
    holders: Counter[str] = field(default_factory=Counter)
    #: Worker hashes (value: the beat's time).
    workers: set[str] = field(default_factory=set)
    #: The registry of holding processes of each key prefix held in (``Keys.holders``).
    registries: set[str] = field(default_factory=set)
    client: Redis | None = None

    def connect(self) -> Redis:
        if self.client is None:  # on the heartbeat's loop: its connections belong there
            self.client = open_client(
                self.url,
                max_connections=2,
                connect_timeout=self.settings.connect_timeout,
                prepare_pool=lambda pool: prepared(pool, self.settings),
            )
        return self.client

    async def beat(self, name: str, lease_ms: int) -> None:
        client = self.connect()
        lease = {key: lease_ms for key in [*self.holders, *self.registries]}
        lease.update(dict.fromkeys(self.workers, 0))
        # one script per slot (one for all on a single server)
        await asyncio.gather(
            *(
                client.eval(_BEAT, len(keys), *keys, name, *(lease[key] for key in keys))
                for keys in by_slot(client, list(lease))
            )
        )

    async def drop(self, name: str, keys: list[str]) -> None:
        client = self.connect()
        await asyncio.gather(*(client.hdel(key, name) for key in keys))


class Heartbeat:
    """The process's one heartbeat; :func:`heartbeat` returns it."""

    def __init__(self) -> None:
        #: The process's name as a holder (a worker's is its consumer name).
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_ms = 5000
        self.interval = 1.0
        #: A worker set the timings (its command line wins over the settings).
        self.configured = False
        self._servers: dict[str, _Server] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def configure(self, *, name: str, lease_ms: int, interval: float) -> None:
        """A worker's identity and timings (before it holds anything)."""
        self.name, self.lease_ms, self.interval = name, lease_ms, interval
        self.configured = True

    def adopt(self, lease_seconds: float) -> None:
        """The settings' lease, unless a worker set its own: five beats per lease."""
        if not self.configured:
            self.lease_ms = max(1, int(lease_seconds * 1000))
            self.interval = lease_seconds / 5

    def hold(self, settings: Settings, url: str, key: str) -> bool:
        """Beat ``key`` (a queue's holders hash) from now on; True if it was not beaten yet,
        so the caller's script must write the first lease itself."""
        with self._lock:
            server = self._server(settings, url)
            first = server.holders[key] == 0
            server.holders[key] += 1
            server.registries.add(Keys(settings.key_prefix).holders())
        self._start()
        return first

    def beat_worker(self, settings: Settings, url: str, key: str) -> None:
        """Refresh this worker's entry in ``key`` (``<p>:workers``) with every beat."""
        with self._lock:
            self._server(settings, url).workers.add(key)
        self._start()

    def beat_once(self) -> None:
        """Beat every key now (blocking: call it from a thread, not from an event loop)."""
        self._call(self._beat_all())

    def release(self, url: str, keys: list[str]) -> None:
        """Stop beating ``keys`` (once each was released as often as held) and drop the
        entries no longer beaten: a process that leaves leaves no lease behind (blocking)."""
        with self._lock:
            server = self._servers.get(url)
            if server is None:
                return
            gone = [key for key in keys if key in server.workers]
            server.workers.difference_update(gone)
            for key in keys:
                if server.holders[key] > 0:
                    server.holders[key] -= 1
                    if server.holders[key] == 0:
                        del server.holders[key]
                        gone.append(key)
            if not server.holders:  # holds nothing any more: out of the registries too
                gone += server.registries
                server.registries.clear()
        if gone:
            try:
                self._call(server.drop(self.name, gone))
            except (RedisError, OSError, concurrent.futures.TimeoutError) as exc:
                log.warning("Could not remove the heartbeat of %s: %s", self.name, exc)

    def _server(self, settings: Settings, url: str) -> _Server:
        server = self._servers.get(url)
        if server is None:
            server = self._servers[url] = _Server(url, settings)
        return server

    def _start(self) -> None:
        with self._lock:
            if self._loop is not None:
                return
            self._loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._run, name="flowbus-heartbeat", daemon=True)
        thread.start()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._loop is None:
            coro.close()
            return
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(_WAIT)

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._beat_forever())

    async def _beat_forever(self) -> None:
        while True:
            await self._beat_all()
            await asyncio.sleep(self.interval)

    async def _beat_all(self) -> None:
        with self._lock:
            servers = list(self._servers.values())
        for server in servers:
            try:
                await server.beat(self.name, self.lease_ms)
            except (RedisError, OSError) as exc:  # retried next interval; an outage lapses it
                log.warning("Heartbeat of %s failed: %s", self.name, exc)

    def _leave(self) -> None:
        for url, server in list(self._servers.items()):
            self.release(url, [*server.holders, *server.workers])


class Leases:
    """A runtime's share of the process's heartbeat: the name its scripts write as the holder
    of the runs it starts, and the first lease in each queue it starts holding runs in."""

    def __init__(self, beat: Heartbeat, settings: Settings, url: str) -> None:
        self._beat = beat
        self._settings = settings
        self._url = url
        self._held: set[str] = set()

    @property
    def name(self) -> str:
        return self._beat.name

    def first_lease(self, holders_key: str) -> str:
        """The lease (ms) a script must write for this process, "" when it is beaten already."""
        if holders_key in self._held:
            return ""
        self._held.add(holders_key)
        first = self._beat.hold(self._settings, self._url, holders_key)
        return str(self._beat.lease_ms) if first else ""

    def beat_worker(self, workers_key: str) -> None:
        """Beat this worker's entry in ``workers_key`` too."""
        self._beat.beat_worker(self._settings, self._url, workers_key)

    def release(self) -> None:
        """Stop beating for this runtime's runs (blocking)."""
        held, self._held = list(self._held), set()
        self._beat.release(self._url, held)


_heartbeat = Heartbeat()
atexit.register(_heartbeat._leave)


def heartbeat() -> Heartbeat:
    """The heartbeat of this process."""
    return _heartbeat
