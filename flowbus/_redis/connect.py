"""Clients for a URL: one server, or a Redis Cluster (Valkey Cluster alike).

``redis+cluster://[user:pass@]host:port[,host:port…]`` (``rediss+cluster://`` with TLS) names a
cluster by any of its nodes. A plain ``redis://`` URL is used as a cluster too when the node it
names says it is one (``INFO cluster``, see :func:`as_cluster_url`), and the log says so.

A cluster client is redis-py's ``RedisCluster``. It answers the same commands as ``Redis``, so
flowbus holds either as a ``Redis``; the few places that differ (pipelines, script loading, the
clock, blocking reads) ask :func:`is_cluster`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import redis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode, ClusterPipeline
from redis.asyncio.connection import Connection, ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError, SlotNotCoveredError

from flowbus._redis.failover import CALL_ERRORS, lost_node, ride_out
from flowbus._redis.packing import packed_by_hiredis, packing
from flowbus.exceptions import ConfigurationError

logger = logging.getLogger("flowbus")

#: Cluster URL schemes and the plain scheme each node is reached with.
_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
#: Connections a cluster node may open beyond the queued callers' cap, for commands queued
#: at another node and redirected here (MOVED: a failover or a slot migration); a command
#: that still finds none waits (see :meth:`QueuedCluster.execute_command`).
_HEADROOM = 8

#: Commands whose keys follow ``STREAMS`` (the first half of what follows it).
_STREAM_READS = ("XREAD", "XREADGROUP")
#: Function calls: ``FCALL name numkeys key …``.
_FUNCTION_CALLS = ("FCALL", "FCALL_RO")
#: Calls that name their keys after their number: ``FCALL name numkeys key …`` and the like.
_SCRIPT_CALLS = (*_FUNCTION_CALLS, "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO")
_STREAMS = (b"STREAMS", "STREAMS")
_BLOCK = (b"BLOCK", "BLOCK")

#: Plain URLs found to name a cluster node (or not), so each is asked once per process.
_probed: dict[str, bool] = {}
#: Nodes whose places the running task holds (a pipeline's): a command it resends to one of
#: them (a redirect) takes no second place, so pipelines never wait for each other.
_holding: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "flowbus_holding", default=frozenset()
)


@dataclass(frozen=True, slots=True)
class ClusterAddress:
    """What a cluster URL names: its nodes, and the options every node is reached with."""

    nodes: tuple[tuple[str, int], ...]
    options: dict[str, Any]


def cluster_address(url: str) -> ClusterAddress | None:
    """The cluster a URL names, or None for a single server.

    Raises:
        ConfigurationError: a cluster URL without a ``host:port``, or with a database number.
    """
    scheme, sep, rest = url.partition("://")
    plain = _CLUSTER_SCHEMES.get(scheme)
    if plain is None:
        return None
    auth, _, located = rest.rpartition("@")
    hosts = located.split("/", 1)[0].split("?", 1)[0]
    tail = located[len(hosts) :]  # path and query
    nodes = tuple(_host_port(h) for h in hosts.split(",") if h)
    if not nodes or not sep:
        raise ConfigurationError(f"{scheme}:// needs at least one host:port")
    first = f"{plain}://{auth + '@' if auth else ''}{nodes[0][0]}:{nodes[0][1]}{tail}"
    options: dict[str, Any] = dict(parse_url(first))
    options.pop("host"), options.pop("port")
    if options.pop("db", 0):
        raise ConfigurationError("a Redis Cluster has only database 0")
    if options.pop("connection_class", None) is not None:  # rediss: TLS
        options["ssl"] = True
    return ClusterAddress(nodes, options)


def _host_port(item: str) -> tuple[str, int]:
    parts = urlsplit(f"//{item}")
    try:
        port = parts.port or 6379
    except ValueError as exc:
        raise ConfigurationError(f"bad cluster node {item!r}: {exc}") from None
    if not parts.hostname:
        raise ConfigurationError(f"bad cluster node {item!r}")
    return parts.hostname, port


def as_cluster_url(url: str, *, timeout: float = 5.0) -> str:
    """``url``, or its ``+cluster`` form when the server it names is a cluster node.

    Asked once per URL and process; a server that cannot be asked is taken as it is named
    (the runtime's own check reports it).
    """
    scheme, _, rest = url.partition("://")
    if scheme not in ("redis", "rediss"):
        return url
    if url not in _probed:
        try:
            with redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            ) as client:
                enabled = client.info("cluster").get("cluster_enabled") == 1
        except (RedisError, OSError, ValueError):
            return url
        if enabled:
            logger.info(
                "%s is a Redis Cluster node: using it as a cluster", rest.rpartition("@")[2]
            )
        _probed[url] = enabled
    return f"{scheme}+cluster://{rest}" if _probed[url] else url


class QueuedCluster(RedisCluster):
    """A ``RedisCluster`` whose callers wait for one of a node's ``limit`` connections, and
    wait out a failover.

    redis-py raises ``MaxConnectionsError`` when every connection of a node is busy; flowbus's
    contract (``FLOWBUS_MAX_CONNECTIONS``) is that callers queue, here per node. redis-py
    retries a failed command at once, many times (no backoff), which a failover outlasts;
    here each command that blocks on nothing is sent again with a backoff, for up to
    ``failover_timeout`` seconds (:func:`failover.ride_out`), and blocking reads are left to
    their reader, which follows its stream (:class:`failover.StreamFollower`).
    """

    def __init__(self, *, limit: int, failover_timeout: float, **kwargs: Any) -> None:
        no_retry = Retry(NoBackoff(), 0)  # the retries are ride_out's
        super().__init__(max_connections=2 * limit + _HEADROOM, retry=no_retry, **kwargs)
        self.limit = limit
        self.failover_timeout = failover_timeout
        self._gates: dict[str, asyncio.Semaphore] = {}

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if _blocks(args):
            return await super().execute_command(*args, **kwargs)
        # a full pool (MaxConnectionsError) is met before anything is sent: tried again too
        return await ride_out(
            lambda: super(QueuedCluster, self).execute_command(*args, **kwargs),
            within=self.failover_timeout,
        )

    async def send_batch(
        self, commands: list[tuple[Any, ...]], node_of: dict[int, str]
    ) -> list[Any]:
        """The raw replies (error replies in place) to a turn's commands (see
        ``autopipeline.Batch``), each sent to the primary of its key's slot: a node's share
        packed in one write on one of its connections, every node at once."""
        return await self.on_every_node(lambda: self._send_by_node(commands, node_of))

    async def on_every_node(self, send: Callable[[], Awaitable[list[Any]]]) -> list[Any]:
        """``send``'s replies, sent while holding a place on every primary (as a pipeline
        must), and sent again after a lost node for up to ``failover_timeout``; a MOVED reply
        is left in place, and the slot map read again."""

        async def attempt() -> list[Any]:
            try:
                async with self.every_node():
                    return await send()
            except CALL_ERRORS as exc:
                if lost_node(exc):
                    self.remap()
                raise

        replies = await ride_out(attempt, within=self.failover_timeout)
        if any(isinstance(r, Exception) and lost_node(r) for r in replies):
            self.remap()
        return replies

    async def _send_by_node(
        self, commands: list[tuple[Any, ...]], node_of: dict[int, str]
    ) -> list[Any]:
        shares: dict[str, tuple[ClusterNode, list[int]]] = {}
        for position, args in enumerate(commands):
            key = node_of.get(position) or _first_key(args)
            node = self.get_default_node() if key is None else self.get_node_from_key(key)
            if node is None:  # redis-py raises this itself when it has no map of the slot
                raise SlotNotCoveredError(f"no node serves the slot of {key!r}")
            shares.setdefault(node.name, (node, []))[1].append(position)
        replies: list[Any] = [None] * len(commands)
        exchanges = [
            _exchange(node, commands, positions, replies) for node, positions in shares.values()
        ]
        if len(exchanges) == 1:
            await exchanges[0]
        else:
            await asyncio.gather(*exchanges)
        return replies

    def remap(self) -> None:
        """Read the cluster's slot map again before the next command (a pipeline met a lost
        node, which redis-py notices only for single commands)."""
        self._initialize = True

    async def initialize(self, *args: Any, **kwargs: Any) -> QueuedCluster:
        """Connect; then close the connection that asked a startup node for the slots, which
        redis-py keeps idle beside that node's own pool (one more connection per client)."""
        await super().initialize(*args, **kwargs)
        serving = {id(node) for node in self.nodes_manager.nodes_cache.values()}
        # a copy: another initialize (a caller racing this one) may change it meanwhile
        for node in list(self.nodes_manager.startup_nodes.values()):
            if id(node) not in serving:
                await node.disconnect()
        return self

    async def _determine_slot(self, command: str, *args: Any) -> int:
        """The slot of a command; for stream reads and function calls found here, not by
        ``COMMAND GETKEYS``, which redis-py would send before every XREAD and every FCALL
        (a round trip more per blocking read, per transition)."""
        keys: Sequence[Any] = ()
        if command in _STREAM_READS:
            at = next((i for i, a in enumerate(args) if a in _STREAMS), None)
            if at is not None:
                streams = args[at + 1 :]
                keys = streams[: len(streams) // 2]
        elif command in _FUNCTION_CALLS and len(args) >= 2 and str(args[1]).isdigit():
            keys = args[2 : 2 + int(args[1])]
        slots = {self.keyslot(key) for key in keys}
        if len(slots) == 1:
            return slots.pop()
        return await super()._determine_slot(command, *args)

    def _gate(self, node: ClusterNode) -> asyncio.Semaphore:
        gate = self._gates.get(node.name)
        if gate is None:
            gate = self._gates.setdefault(node.name, asyncio.Semaphore(self.limit))
        return gate

    async def _execute_command(self, target_node: ClusterNode, *args: Any, **kwargs: Any) -> Any:
        if target_node.name in _holding.get():
            return await super()._execute_command(target_node, *args, **kwargs)
        async with self._gate(target_node):
            return await super()._execute_command(target_node, *args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        """A pipeline whose sending queues for places like a command (a transaction, on one
        node, is left as redis-py sends it)."""
        if transaction or shard_hint:
            return super().pipeline(transaction, shard_hint)
        return _QueuedPipeline(self)  # type: ignore[abstract]  # redis-py sets it at run time

    @contextlib.asynccontextmanager
    async def every_node(self) -> AsyncIterator[None]:
        """Hold one connection's place on every primary, for a pipeline that may use them all
        (taken in one order, so two pipelines never wait for each other's places)."""
        if self._initialize:
            await self.initialize()
        async with contextlib.AsyncExitStack() as places:
            nodes = sorted(self.get_primaries(), key=lambda n: n.name)
            for node in nodes:
                await places.enter_async_context(self._gate(node))
            held = _holding.set(_holding.get() | {n.name for n in nodes})
            try:
                yield
            finally:
                _holding.reset(held)


class _QueuedPipeline(ClusterPipeline):
    """A cluster pipeline sent while it holds a place on every primary, and sent again after
    a lost node for up to the client's ``failover_timeout`` (commands that have their replies
    are not sent again). Redirections are not followed inside: a MOVED reply is raised, or
    left in place with ``raise_on_error=False``, and the slot map read again.
    """

    cluster_client: QueuedCluster

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        strategy: Any = self._execution_strategy
        queued = list(strategy._command_queue)  # emptied by each execution

        async def send() -> Any:
            strategy._command_queue = queued
            return await ClusterPipeline.execute(self, raise_on_error, False)

        return await self.cluster_client.on_every_node(send)


def _first_key(args: tuple[Any, ...]) -> Any:
    """The first key of a command that names its key first or is a script or function call
    (``FCALL name numkeys key …``); None for a call of no key."""
    if args[0] in _SCRIPT_CALLS:
        return args[3] if int(args[2]) > 0 else None
    return args[1]


async def _exchange(
    node: ClusterNode, commands: list[tuple[Any, ...]], positions: list[int], replies: list[Any]
) -> None:
    """Send a node its share of a batch on one of its connections; its replies go to their
    places. A connection an exchange failed on is closed (a read cut short leaves it unusable)."""
    conn = node.acquire_connection()
    try:
        await conn.send_packed_command(conn.pack_commands(commands[i] for i in positions))
        for i in positions:
            try:
                replies[i] = await conn.read_response()
            except ResponseError as exc:
                replies[i] = exc
    except BaseException:
        await conn.disconnect()
        raise
    finally:
        node.release(conn)


def _blocks(args: tuple[Any, ...]) -> bool:
    """Whether a command is a blocking read (``XREAD``/``XREADGROUP`` with ``BLOCK``)."""
    return args[0] in _STREAM_READS and any(a in _BLOCK for a in args[1:])


def open_client(
    url: str,
    *,
    max_connections: int,
    connect_timeout: float,
    failover_timeout: float = 30.0,
    retry: Retry | None = None,
    health_check_interval: int = 0,
    decode_responses: bool = False,
    prepare_pool: Callable[[ConnectionPool], ConnectionPool] = packed_by_hiredis,
) -> Redis:
    """A client of ``url`` with no socket timeout (blocking reads outlive any fixed one).

    Callers beyond ``max_connections`` (per node, on a cluster) wait for a free connection.
    ``retry`` serves a single server; a cluster's commands wait out a failover for up to
    ``failover_timeout`` seconds instead. ``prepare_pool`` adapts a single server's pool (a
    cluster's connections pack with hiredis).
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": None,
        "socket_keepalive": True,
        "health_check_interval": health_check_interval,
        "decode_responses": decode_responses,
    }
    address = cluster_address(url)
    if address is None:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=None,
            **options,
            **({"retry": retry} if retry is not None else {}),
        )
        return Redis(connection_pool=prepare_pool(pool))
    cluster = QueuedCluster(
        limit=max_connections,
        failover_timeout=failover_timeout,
        startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
        **{**address.options, **options},
    )
    connection_class = packing(cluster.connection_kwargs["connection_class"])
    cluster.connection_kwargs["connection_class"] = connection_class
    for node in cluster.startup_nodes:
        node.connection_class = cast("type[Connection]", connection_class)
    return cast("Redis", cluster)  # the same commands; see the module's docstring


def is_cluster(client: Redis) -> bool:
    """Whether ``client`` talks to a cluster (a ``RedisCluster`` held as a ``Redis``)."""
    return isinstance(client, RedisCluster)


def by_slot(client: Redis, keys: Sequence[str]) -> list[list[str]]:
    """``keys`` in groups one command may name together: all on one server; on a cluster,
    those of each hash slot (a multi-stream read of one group blocks on one connection)."""
    if not isinstance(client, RedisCluster):
        return [list(keys)] if keys else []
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(client.keyslot(key), []).append(key)
    return list(groups.values())


def node_of(client: Redis, key: str) -> str:
    """``host:port`` of the server that holds ``key`` (the primary of its slot on a cluster;
    the client must have connected)."""
    if isinstance(client, RedisCluster):
        return str(client.get_node_from_key(key).name)
    kwargs = client.connection_pool.connection_kwargs
    return str(
        kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    )


def primaries_of(client: Redis) -> list[str]:
    """``host:port`` of every primary (the one server of a plain client)."""
    if isinstance(client, RedisCluster):
        return sorted(str(node.name) for node in client.get_primaries())
    return [node_of(client, "")]


async def close_client(client: Redis) -> None:
    """Close ``client`` and every connection it opened."""
    await client.aclose()
    if not is_cluster(client):
        await client.connection_pool.aclose()
