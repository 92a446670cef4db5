"""Example flows served by the workers of ``docker-compose.yml``.

Deploy and run one from any shell that reaches the same Redis::

    flowbus deploy flowbus_worker.examples:greet greet   # or, from Python:
    # greet.deploy("greet"); get_client().create_flow_run_from_deployment("greet/greet")
"""

from __future__ import annotations

from flowbus import RunInput, flow, suspend_flow_run, task


@task
def shout(text: str) -> str:
    return text.upper()


@flow
def greet(name: str = "world") -> str:
    """Greet someone, in capitals."""
    greeting: str = shout(f"hello, {name}")
    return greeting


class Approval(RunInput):
    approved: bool
    note: str = ""


@flow
def approve(item: str = "release") -> str:
    """Prepare ``item``, suspend until someone approves it (resume with input), then finish."""
    prepared = shout(item)
    answer = suspend_flow_run(wait_for_input=Approval, key="approval", timeout=24 * 3600)
    return f"{prepared}: {'approved' if answer.approved else 'rejected'} {answer.note}".strip()
