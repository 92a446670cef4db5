"""The client under Prefect's import paths (``prefect.client`` → ``flowbus.client``)."""

from flowbus.client.orchestration import (
    FlowbusClient,
    PrefectClient,
    SyncFlowbusClient,
    SyncPrefectClient,
    get_client,
)

__all__ = ["FlowbusClient", "PrefectClient", "SyncFlowbusClient", "SyncPrefectClient", "get_client"]
