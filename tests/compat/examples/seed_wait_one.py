# The first example of prefect.flow_runs.wait_for_flow_run's docstring, with "prefect"
# replaced by "flowbus" and the deployment id taken from the command line.
import asyncio
import sys

from flowbus.client.orchestration import get_client
from flowbus.flow_runs import wait_for_flow_run

async def main():
    async with get_client() as client:
        flow_run = await client.create_flow_run_from_deployment(deployment_id=sys.argv[1])
        flow_run = await wait_for_flow_run(flow_run_id=flow_run.id)
        print(flow_run.state)

if __name__ == "__main__":
    asyncio.run(main())
