"""A Redis Cluster on loopback ports, built from :class:`EmbeddedServer` nodes.

For tests and benchmarks: ``masters`` primaries share the 16384 hash slots evenly, each with
``replicas`` replicas of its own. The cluster is formed with ``CLUSTER ADDSLOTSRANGE``, ``MEET``
and ``REPLICATE`` directly, so no ``redis-cli`` (or ``valkey-cli``) is needed.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import RedisError

from flowbus._redis.server_process import POLL_INTERVAL, PROBE_TIMEOUT, EmbeddedServer
from flowbus.exceptions import ConfigurationError

#: A node's cluster bus listens this many ports above its own.
_BUS_OFFSET = 10_000


class ClusterNotReady(ConfigurationError):
    """Raised when the nodes did not form a healthy cluster in time."""


class LocalCluster:
    """``masters`` primaries (and ``replicas`` replicas of each) on free loopback ports.

    ``node_timeout_ms`` is how long a node may be unreachable before it is judged failed,
    and so about how long a failover takes.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        masters: int = 3,
        replicas: int = 0,
        node_timeout_ms: int = 5000,
        appendonly: bool = True,
        binary: Path | None = None,
    ) -> None:
        config = [
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {node_timeout_ms}",
            "cluster-replica-validity-factor 0",  # any replica may be promoted
            "cluster-allow-replica-migration no",
        ]
        self.masters = masters
        self.nodes = [
            EmbeddedServer(
                data_dir / f"node{i}",
                port=_free_node_port(),
                appendonly=appendonly,
                binary=binary,
                extra_config=config,
            )
            for i in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        """``redis+cluster://`` naming every node (any one of them is enough to connect)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 30.0) -> str:
        """Start every node, form the cluster and wait until it serves; return its URL."""
        for node in self.nodes:
            node.start()
        try:
            self._form(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def primary_for(self, key: str) -> EmbeddedServer:
        """The node that serves ``key``'s slot now (after failovers too)."""
        slot = key_slot(key.encode())
        for node in self.nodes:
            if not node.is_alive():
                continue
            with _client(node) as client:
                for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(primary[1])
                        return next(n for n in self.nodes if n.port == port)
        raise ClusterNotReady(f"no live node serves the slot of {key!r}")

    def replicated(self) -> list[EmbeddedServer]:
        """The live primaries that have a live replica (whose slots can fail over)."""
        found = []
        for node in self.nodes:
            if node.is_alive():
                with _client(node) as client:
                    info = client.info("replication")
                if info["role"] == "master" and info.get("connected_slaves", 0) > 0:
                    found.append(node)
        return found

    def replica_of(self, primary: EmbeddedServer) -> EmbeddedServer:
        """A live replica of ``primary``."""
        with _client(primary) as client:
            info = client.info("replication")
        ports = {int(v["port"]) for k, v in info.items() if k.startswith("slave")}
        return next(n for n in self.nodes if n.port in ports and n.is_alive())

    def fail_over(self, key: str, timeout: float = 30.0) -> EmbeddedServer:
        """Kill (SIGKILL) the primary serving ``key`` and wait until its replica serves the
        slot instead; return the killed node (see :meth:`revive`)."""
        victim = self.primary_for(key)
        victim.kill()
        self.wait_promoted(key, victim, timeout)
        return victim

    def wait_promoted(self, key: str, victim: EmbeddedServer, timeout: float = 30.0) -> None:
        """Wait until a node other than ``victim`` serves ``key`` and the cluster is healthy."""
        _wait(
            lambda: self.primary_for(key) is not victim and self._healthy(),
            time.monotonic() + timeout,
            f"no replica took over from the primary of {key!r}",
        )

    def revive(self, timeout: float = 30.0) -> None:
        """Start every killed node again (each rejoins as a replica) and wait until healthy."""
        for node in self.nodes:
            if not node.is_alive():
                node.start()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every live node reports ``cluster_state:ok`` and agrees on the primaries."""
        _wait(lambda: self._healthy(), time.monotonic() + timeout, "the cluster did not heal")

    def _form(self, deadline: float) -> None:
        primaries, replicas = self.nodes[: self.masters], self.nodes[self.masters :]
        step = REDIS_CLUSTER_HASH_SLOTS // self.masters
        for i, node in enumerate(primaries):
            last = REDIS_CLUSTER_HASH_SLOTS - 1 if i == self.masters - 1 else (i + 1) * step - 1
            with _client(node) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", i * step, last)
        with _client(self.nodes[0]) as first:
            for node in self.nodes[1:]:
                first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        _wait(self._all_met, deadline, "the nodes did not meet")
        for i, node in enumerate(replicas):
            with _client(primaries[i % self.masters]) as primary:
                primary_id = primary.execute_command("CLUSTER", "MYID")
            with _client(node) as client:
                client.execute_command("CLUSTER", "REPLICATE", primary_id)
        _wait(self._healthy, deadline, "the cluster did not become ready")

    def _all_met(self) -> bool:
        for node in self.nodes:
            with _client(node) as client:
                lines = client.execute_command("CLUSTER", "NODES").decode().splitlines()
            if len(lines) < len(self.nodes) or any("handshake" in line for line in lines):
                return False
        return True

    def _healthy(self) -> bool:
        live = [node for node in self.nodes if node.is_alive()]
        views = set()
        for node in live:
            with _client(node) as client:
                info = client.execute_command("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info:
                    return False
                slots = client.execute_command("CLUSTER", "SLOTS")
                views.add(tuple(sorted((s[0], s[1], int(s[2][1])) for s in slots)))
                replication = client.info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
        return len(views) == 1


#: Where the system's ephemeral ports begin (Linux's default when it cannot be read).
_EPHEMERAL_FLOOR_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_floor() -> int:
    try:
        return int(_EPHEMERAL_FLOOR_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _free_node_port() -> int:
    """A free port whose cluster bus port (10000 higher) is free too, both below the
    ephemeral range: a node killed in a failover test gets its port back on revival, which a
    connection's source port (always ephemeral) could otherwise take while the node is down."""
    top = _ephemeral_floor() - _BUS_OFFSET - 1
    while True:
        port = random.randint(max(1_024, top - 8_000), top)
        with contextlib.ExitStack() as stack:
            try:
                for candidate in (port, port + _BUS_OFFSET):
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
        return port


def _client(node: EmbeddedServer) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=node.port,
        password=node.password,
        socket_timeout=PROBE_TIMEOUT,
        socket_connect_timeout=PROBE_TIMEOUT,
    )


def _wait(ready: Callable[[], Any], deadline: float, what: str) -> None:
    """Poll ``ready`` (node replies only: a cluster forms by gossip, which no event announces)."""
    while True:
        try:
            if ready():
                return
        except RedisError:
            pass
        if time.monotonic() > deadline:
            raise ClusterNotReady(what)
        time.sleep(POLL_INTERVAL)
