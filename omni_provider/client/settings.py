"""The tunable numbers of a client and of an ``omni`` connection's extras, and their accepted ranges.

One model, used by ``OmniScimClient`` for its arguments and by ``OmniScimHook`` for the connection extras,
so a value is checked the same way wherever it comes from. URI-form connections deliver every extra as a
string, so values are coerced ("30" -> 30.0) but must be finite and in range: ``"nan"`` or ``"inf"`` is a
configuration error, never a silently disabled limit. A new extra is one field here; the hook passes every
field but ``max_retries`` to the client under the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from omni_provider.client.errors import OmniConfigurationError
from omni_provider.client.models import DEFAULT_PATCH_FORM, PatchForm

MIB = 1024 * 1024


class ClientSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    #: Requests per minute per API key (Omni allows 60 per key; 500 per instance on request).
    rate_limit_per_minute: float = Field(default=60.0, ge=0.001, le=1_000_000)
    #: Length of the window the limit counts in (Omni's is a minute).
    rate_window_seconds: float = Field(default=60.0, ge=0.1, le=3600)
    #: Share of each key's limit left unused, for other tools that use the same key.
    rate_limit_margin: float = Field(default=0.0, ge=0, le=0.9)
    #: Longest one request may take, connect to last byte (also the longest single wait for data).
    timeout: float = Field(default=30.0, ge=0.1, le=3600)
    connect_timeout: float = Field(default=10.0, ge=0.1, le=600)
    #: Retries after the first attempt of a request.
    max_retries: int = Field(default=4, ge=0, le=20)
    #: Users asked for per list page.
    page_size: int = Field(default=100, ge=1, le=1000)
    #: Largest answer read; a larger one is refused while it streams in.
    max_response_bytes: int = Field(default=32 * MIB, ge=1024, le=1024 * MIB)
    #: How attribute changes are written (see ``models.attributes_patch``).
    patch_form: PatchForm = DEFAULT_PATCH_FORM


def accepted_range(name: str) -> str | None:
    """``a finite number from 0.1 to 3,600`` for a bounded numeric field, from its constraints."""
    field = ClientSettings.model_fields[name]
    if get_origin(field.annotation) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in get_args(field.annotation))
    low = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
    kind = "a whole number" if field.annotation in (int, "int") else "a finite number"
    if low is None or high is None:
        return None
    return f"{kind} from {low:,} to {high:,}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 30 else text[:29] + "…"


def validate_settings(
    values: Mapping[str, Any], *, describe: Mapping[str, str] | None = None
) -> ClientSettings:
    """``ClientSettings`` from ``values`` (absent ones take their defaults), or ``OmniConfigurationError``
    naming each bad setting (as ``describe[name]``, e.g. "connection 'omni' extra 'timeout'") and the
    range it accepts."""
    try:
        return ClientSettings.model_validate(dict(values))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "?"
            label = (describe or {}).get(name, repr(name))
            accepted = accepted_range(name) if name in ClientSettings.model_fields else None
            rule = f"must be {accepted}" if accepted else error["msg"]
            problems.append(f"{label} {rule}, got {_shown(error.get('input'))}")
        raise OmniConfigurationError("; ".join(problems)) from None
