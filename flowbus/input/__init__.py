"""Run input under Prefect's import path (``prefect.input`` → ``flowbus.input``).

The models live in :mod:`flowbus.input.run_input`, the messaging in :mod:`flowbus.input.messages`.
"""

from flowbus.input.messages import InputReceiver, asend_input, receive_input, send_input
from flowbus.input.run_input import AutomaticRunInput, RunInput, RunInputMetadata

__all__ = [
    "AutomaticRunInput",
    "InputReceiver",
    "RunInput",
    "RunInputMetadata",
    "asend_input",
    "receive_input",
    "send_input",
]
