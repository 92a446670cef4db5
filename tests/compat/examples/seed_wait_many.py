# The second example of prefect.flow_runs.wait_for_flow_run's docstring, with "prefect"
# replaced by "flowbus" and the deployment id taken from the command line.
import asyncio
import sys

from flowbus.client.orchestration import get_client
from flowbus.flow_runs import wait_for_flow_run

async def main(num_runs: int):
    async with get_client() as client:
        flow_runs = [
            await client.create_flow_run_from_deployment(deployment_id=sys.argv[1])
            for _
            in range(num_runs)
        ]
        coros = [wait_for_flow_run(flow_run_id=flow_run.id) for flow_run in flow_runs]
        finished_flow_runs = await asyncio.gather(*coros)
        print([flow_run.state for flow_run in finished_flow_runs])

if __name__ == "__main__":
    asyncio.run(main(num_runs=10))
