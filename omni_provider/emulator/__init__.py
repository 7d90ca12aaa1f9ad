"""A local emulator of Omni's SCIM 2.0 user API, for tests, benchmarks and demos.

It is a real HTTP server (Starlette on uvicorn) that plays Omni as documented, including
rate limits and injectable faults, and keeps users in memory or in a JSON state file.
It deliberately imports neither Airflow nor ``omni_provider.client``.
"""

from .app import create_app, get_context
from .attributes import AttributeDefinition
from .config import FAULT_KINDS, EmulatorConfig
from .server import EmulatorServer
from .state import EmulatorState, UserRecord
from .stats import key_id

__all__ = [
    "FAULT_KINDS",
    "AttributeDefinition",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorState",
    "UserRecord",
    "create_app",
    "get_context",
    "key_id",
]
