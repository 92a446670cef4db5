"""Run input under Prefect's import path (``prefect.input`` → ``flowbus.input``).

The models live in :mod:`flowbus.inputs`, the messaging in :mod:`flowbus.messages`.
"""

from flowbus.inputs import AutomaticRunInput, RunInput, RunInputMetadata
from flowbus.messages import InputReceiver, asend_input, receive_input, send_input

__all__ = [
    "AutomaticRunInput",
    "InputReceiver",
    "RunInput",
    "RunInputMetadata",
    "asend_input",
    "receive_input",
    "send_input",
]
