"""``flow.serve()``, ``flow.to_deployment()`` and ``flowbus.serve(*deployments)``, as in Prefect.

Serving registers the deployments, prints how to trigger a run, then becomes a worker for
them: this process is replaced (``exec``) by ``python -m flowbus_worker`` on the flows'
modules and the deployments' queues, so runs execute here until interrupted, with the
worker's leases, retries and graceful stop. A flow defined in the script being run is
imported by the worker under the script's file name (its ``if __name__ == "__main__":``
block, which called ``serve``, does not run again).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowbus._core.bridge import run_blocking
from flowbus._redis.runtime import get_runtime

if TYPE_CHECKING:
    from flowbus.flows import Flow

#: Prefect keywords of ``serve``/``to_deployment`` that mean nothing here (schedules,
#: triggers, the webserver…): accepted, with one warning per name.
_IGNORED = frozenset(
    {
        "interval",
        "cron",
        "rrule",
        "paused",
        "schedule",
        "schedules",
        "concurrency_limit",
        "global_limit",
        "triggers",
        "description",
        "tags",
        "version",
        "enforce_parameter_schema",
        "pause_on_shutdown",
        "webserver",
        "entrypoint_type",
        "job_variables",
        "work_pool_name",
        "work_queue_name",
        "version_type",
        "_sla",
    }
)
_warned: set[str] = set()


@dataclass(frozen=True)
class RunnerDeployment:
    """A deployment to serve: a flow, its name, default parameters and queue."""

    flow: Flow[..., Any]
    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    queue: str = ""

    @property
    def queue_name(self) -> str:
        """The queue its runs go to (by default one per flow, so only its servers take them)."""
        return self.queue or f"serve-{self.flow.name}"

    @property
    def full_name(self) -> str:
        return f"{self.flow.name}/{self.name}"

    async def aapply(self) -> str:
        """Register (or update) the deployment; returns its id."""
        runtime = await get_runtime()
        deployment = await runtime.deployments.create(
            self.flow.name, self.name, queue=self.queue_name, parameters=self.parameters
        )
        return str(deployment.id)

    def apply(self) -> str:
        return run_blocking(self.aapply)


def to_deployment(
    flow: Flow[..., Any],
    name: str,
    parameters: Mapping[str, Any] | None = None,
    queue: str | None = None,
    **ignored: Any,
) -> RunnerDeployment:
    """A deployment of ``flow`` to pass to :func:`serve`; Prefect's other keywords warn once."""
    _warn_ignored(ignored)
    return RunnerDeployment(flow, name, dict(parameters or {}), queue or "")


def serve(
    *deployments: RunnerDeployment,
    print_starting_message: bool = True,
    limit: int | None = None,
    **ignored: Any,
) -> None:
    """Register ``deployments`` and run their flows here until interrupted (never returns)."""
    _warn_ignored(ignored)
    if not deployments:
        raise ValueError("serve() needs at least one deployment (flow.to_deployment(...))")
    for deployment in deployments:
        deployment.apply()
    if print_starting_message:
        _print_start(deployments)
    argv, env = worker_command(deployments, limit)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def worker_command(
    deployments: tuple[RunnerDeployment, ...], limit: int | None
) -> tuple[list[str], dict[str, str]]:
    """The worker's command line and environment for ``deployments``."""
    env = dict(os.environ)
    modules: list[str] = []
    for deployment in deployments:
        module, folder = _module_of(deployment.flow)
        if folder and folder not in env.get("PYTHONPATH", "").split(os.pathsep):
            env["PYTHONPATH"] = os.pathsep.join(p for p in (folder, env.get("PYTHONPATH")) if p)
        if module not in modules:
            modules.append(module)
    argv = [sys.executable, "-m", "flowbus_worker", *modules]
    for queue in dict.fromkeys(d.queue_name for d in deployments):
        argv += ["--queue", queue]
    if limit is not None:
        argv += ["--concurrency", str(limit)]
    return argv, env


def _module_of(flow: Flow[..., Any]) -> tuple[str, str | None]:
    """The importable name of the flow's module, and a folder to import it from if needed."""
    module = flow.fn.__module__
    if module != "__main__":
        return module, None
    script = getattr(sys.modules["__main__"], "__file__", None)
    if not script:
        raise ValueError(f"Cannot serve flow {flow.name!r}: it was not defined in a file")
    path = Path(script).resolve()
    return path.stem, str(path.parent)


def _print_start(deployments: tuple[RunnerDeployment, ...]) -> None:
    lines = [""]
    for deployment in deployments:
        lines.append(
            f"Your flow {deployment.flow.name!r} is being served as {deployment.full_name!r}."
        )
    lines += ["", "To trigger a run of it, use the following command:", ""]
    lines += [f"        $ flowbus run '{d.full_name}'" for d in deployments]
    lines.append("")
    sys.stdout.write("\n".join(lines) + "\n")


def _warn_ignored(ignored: Mapping[str, Any]) -> None:
    unknown = sorted(set(ignored) - _IGNORED)
    if unknown:
        raise TypeError(f"Unexpected keyword argument(s): {', '.join(unknown)}")
    for name in sorted(ignored):
        if name not in _warned:
            _warned.add(name)
            warnings.warn(
                f"{name}= is accepted for Prefect compatibility and ignored by flowbus",
                UserWarning,
                stacklevel=3,
            )
