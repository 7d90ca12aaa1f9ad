"""Reading Omni's attribute definitions, which both the sync run and the single-user update check against."""

from __future__ import annotations

from omni_provider.client import (
    AttributeDefinition,
    OmniApiError,
    OmniAuthenticationError,
    OmniPermissionError,
    OmniScimClient,
)
from omni_provider.sync.engine.log import RunLog


def load_definitions(client: OmniScimClient, log: RunLog) -> dict[str, AttributeDefinition] | None:
    """Attribute definitions when the key may read them; None (checks skipped, said in the log) otherwise."""
    try:
        return client.attribute_definitions_by_name()
    except (OmniPermissionError, OmniAuthenticationError) as exc:
        log.warning(
            "Cannot read Omni's attribute definitions (HTTP %s); attribute names and types are not "
            "checked before writing",
            exc.status_code,
        )
    except OmniApiError as exc:
        if exc.status_code != 404:
            raise
        log.warning("This Omni instance has no /api/v1/user-attributes; attribute checks are skipped")
    return None
