"""Run input under Prefect's import path (``prefect.input`` → ``flowbus.input``).

The models live in :mod:`flowbus.input.run_input`, inputs by key in
:mod:`flowbus.input.actions`, sending and receiving in :mod:`flowbus.input.messages`.
"""

from flowbus.input.actions import (
    acreate_flow_run_input,
    acreate_flow_run_input_from_model,
    adelete_flow_run_input,
    afilter_flow_run_input,
    aread_flow_run_input,
    create_flow_run_input,
    create_flow_run_input_from_model,
    delete_flow_run_input,
    filter_flow_run_input,
    read_flow_run_input,
)
from flowbus.input.messages import (
    GetAutomaticInputHandler,
    GetInputHandler,
    InputReceiver,
    asend_input,
    receive_input,
    send_input,
)
from flowbus.input.run_input import (
    AutomaticRunInput,
    Keyset,
    RunInput,
    RunInputMetadata,
    keyset_from_base_key,
    keyset_from_paused_state,
    run_input_subclass_from_type,
)
from flowbus.models import FlowRunInput

__all__ = [
    "AutomaticRunInput",
    "FlowRunInput",
    "GetAutomaticInputHandler",
    "GetInputHandler",
    "InputReceiver",
    "Keyset",
    "RunInput",
    "RunInputMetadata",
    "acreate_flow_run_input",
    "acreate_flow_run_input_from_model",
    "adelete_flow_run_input",
    "afilter_flow_run_input",
    "aread_flow_run_input",
    "asend_input",
    "create_flow_run_input",
    "create_flow_run_input_from_model",
    "delete_flow_run_input",
    "filter_flow_run_input",
    "keyset_from_base_key",
    "keyset_from_paused_state",
    "read_flow_run_input",
    "receive_input",
    "run_input_subclass_from_type",
    "send_input",
]
