"""``python -m flowbus_worker MODULE… --queue NAME``: the worker's command line.

The worker imports the given modules, so their ``@flow`` definitions register, and runs only
those flows; nothing read from Redis is ever imported.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import logging
import os
import sys
from typing import Any

import anyio
from redis.exceptions import RedisError

from flowbus._redis.keys import validate_queue_name
from flowbus.exceptions import ConfigurationError, FlowbusError
from flowbus.flows import Flow, registry
from flowbus_worker.config import WorkerConfig, default_name
from flowbus_worker.logs import configure
from flowbus_worker.service import Worker

logger = logging.getLogger("flowbus.worker")

#: Exit codes: a usage or import error; a forced stop (second signal) is 1.
EXIT_USAGE = 2


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(value: str) -> int | float:
        number = kind(value)
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
        return number

    return parse


def _queue(value: str) -> str:
    try:
        return validate_queue_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flowbus_worker",
        description="Run the flows of MODULE(s) from flowbus queues in Redis.",
    )
    p.add_argument("modules", nargs="+", metavar="MODULE", help="module defining @flow functions")
    p.add_argument(
        "--queue",
        "-q",
        action="append",
        type=_queue,
        dest="queues",
        help="queue to serve (repeatable; default: default)",
    )
    p.add_argument(
        "--concurrency",
        "-c",
        type=_positive(int),
        default=4,
        help="runs executed at once (default 4)",
    )
    p.add_argument("--name", default=None, help="worker name (default: host-pid-random)")
    p.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds running flows get to finish on SIGTERM (default 30)",
    )
    p.add_argument(
        "--lease",
        type=_positive(float),
        default=5.0,
        help="seconds without heartbeat before another worker takes over (default 5)",
    )
    p.add_argument(
        "--heartbeat",
        type=_positive(float),
        default=1.0,
        help="seconds between heartbeats (default 1)",
    )
    p.add_argument(
        "--sweep-interval",
        type=_positive(float),
        default=30.0,
        help="longest sleep of an idle deadline sweeper; new deadlines wake it (default 30)",
    )
    p.add_argument(
        "--max-deliveries",
        type=_positive(int),
        default=3,
        help="deliveries after which a run whose worker died again is CRASHED",
    )
    p.add_argument(
        "--unknown-flow-timeout",
        type=_positive(float),
        default=60.0,
        help="seconds a run of a flow no live worker of its queue runs waits for one, then "
        "FAILs (default 60)",
    )
    p.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop: uvloop (about a fifth less CPU per run) when installed (default auto)",
    )
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING… (default INFO)")
    p.add_argument("--json", action="store_true", help="log JSON lines")
    return p


def load_flows(modules: list[str]) -> dict[str, Flow[..., Any]]:
    """Import ``modules`` and return the flows they defined, by name."""
    if os.getcwd() not in sys.path:  # as `python -m` does, also when started as `flowbus worker`
        sys.path.insert(0, os.getcwd())
    before = set(registry)
    for module in modules:
        importlib.import_module(module)
    return {name: flow for name, flow in registry.items() if name not in before}


def use_uvloop(choice: str) -> bool:
    """Whether to run on uvloop; ``auto`` takes it when it is installed."""
    if choice == "auto":
        return importlib.util.find_spec("uvloop") is not None
    return choice == "uvloop"


def _startup_error(message: str, code: int) -> int:
    """A worker that cannot start says why in one line (``error: …``) and exits ``code``."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    return code


def settle_heap() -> None:
    """Put what start-up made (modules, flows, their classes) out of the collector's sight.

    A worker's runs make short-lived objects; each full collection would walk the whole
    long-lived heap again, a tenth of a trivial run's instructions.
    """
    gc.collect()
    gc.freeze()


def main(argv: list[str] | None = None) -> int:
    """Run the worker; return its exit code (0 after a graceful stop)."""
    args = parser().parse_args(argv)
    configure(args.log_level, json_lines=args.json)
    try:
        flows = load_flows(args.modules)
    except Exception as exc:  # whatever a module raises on import: one line, no traceback
        modules = ", ".join(args.modules)
        return _startup_error(f"cannot import {modules}: {type(exc).__name__}: {exc}", EXIT_USAGE)
    if not flows:
        sys.stderr.write(f"error: the modules {', '.join(args.modules)} define no flows\n")
        return EXIT_USAGE
    config = WorkerConfig(
        modules=tuple(args.modules),
        queues=tuple(dict.fromkeys(args.queues or ["default"])),
        concurrency=args.concurrency,
        name=args.name or default_name(),
        grace=max(0.0, args.grace),
        lease=args.lease,
        heartbeat=args.heartbeat,
        sweep_interval=args.sweep_interval,
        max_deliveries=args.max_deliveries,
        unknown_flow_timeout=args.unknown_flow_timeout,
        json_logs=args.json,
    )
    worker = Worker(config, flows)
    settle_heap()
    try:
        code = anyio.run(worker.run, backend_options={"use_uvloop": use_uvloop(args.loop)})
    except ConfigurationError as exc:  # no server to serve: one line, not a traceback
        return _startup_error(f"cannot start: {exc}", EXIT_USAGE)
    except (FlowbusError, RedisError, OSError, ValueError) as exc:  # e.g. Redis unreachable
        return _startup_error(str(exc), 1)
    if worker.abandoned_threads:  # a sync flow's thread may never end: do not wait for it
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
