# Deployments that suspend, served with flowbus.serve: one waits for input while suspended,
# one suspends itself by id and stops at its next task boundary.
from flowbus import flow, serve, task
from flowbus.context import get_run_context
from flowbus.flow_runs import suspend_flow_run
from flowbus.input import RunInput


class Approval(RunInput):
    approved: bool


@task
def prepare() -> int:
    return 1


@task
def after_the_boundary() -> int:
    return 2


@flow
def approve_later() -> bool:
    prepare()
    approval = suspend_flow_run(wait_for_input=Approval, timeout=600)
    return approval.approved


@flow
def stops_itself() -> int:
    prepare()
    suspend_flow_run(flow_run_id=get_run_context().flow_run.id)
    return after_the_boundary()


if __name__ == "__main__":
    serve(approve_later.to_deployment("approve"), stops_itself.to_deployment("self"))
