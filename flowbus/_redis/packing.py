"""Commands packed into the Redis protocol by hiredis (C) rather than redis-py (Python).

redis-py's sync connections pack with hiredis when it is installed; its asyncio connections
did not before redis-py 8.2 (and since then encode each argument in a Python loop first), and
packing the script calls (11 keys plus arguments each) was a tenth of a busy worker's CPU.
flowbus's own commands (text and numbers) go to hiredis as they are; anything else is packed
the connection's own way.
"""

from __future__ import annotations

from typing import Any, TypeVar

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.utils import HIREDIS_AVAILABLE

if HIREDIS_AVAILABLE:
    from hiredis import pack_command

PoolT = TypeVar("PoolT", bound=ConnectionPool)


class _HiredisPacking(AbstractConnection):
    """Mixed in before a connection class: only how commands are packed changes."""

    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0]
        if isinstance(head, str) and " " not in head:  # flowbus's commands: packed as they are
            try:
                return [pack_command(args)]
            except TypeError:
                pass
        # a multi-word command name ("CLIENT SETNAME") or a buffer argument: redis-py's way
        packed: list[bytes] = super().pack_command(*args)
        return packed


#: One packing subclass per connection class.
_subclasses: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def packing(cls: type[AbstractConnection]) -> type[AbstractConnection]:
    """``cls``, packing with hiredis when it is installed."""
    if not HIREDIS_AVAILABLE or issubclass(cls, _HiredisPacking):
        return cls
    if cls not in _subclasses:
        _subclasses[cls] = type(cls.__name__, (_HiredisPacking, cls), {})
    return _subclasses[cls]


def packed_by_hiredis(pool: PoolT) -> PoolT:
    """``pool``, whose connections (plain, TLS or Unix socket alike) pack with hiredis."""
    pool.connection_class = packing(pool.connection_class)
    return pool
