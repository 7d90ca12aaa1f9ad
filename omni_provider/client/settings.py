"""Every client setting in one place: its default, type, accepted range, label and description.

``ClientSettings`` is the single source. Derived from it (and checked against it by
``tests/hooks/test_settings_drift.py``): ``OmniScimClient``'s keyword defaults and checks, the ``omni``
connection's form fields on Airflow 3 (``get_provider_info``) and Airflow 2.11 (``hooks/connection_form``),
the hook's reading of the extras, and the fields of the Dagster resource and component. A new setting is one
field here.

URI-form connections deliver every extra as a string, so values are coerced ("30" -> 30.0) but must be
finite and in range: ``"nan"`` or ``"inf"`` is a configuration error, never a silently disabled limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from omni_provider.client.retry import RetryPolicy
from omni_provider.domain.models import DEFAULT_PATCH_FORM, PatchForm
from omni_provider.errors import OmniConfigurationError

MIB = 1024 * 1024


class ClientSettings(BaseModel):
    """The ranges are what Omni and a person typing a value make sensible (README, "Client settings")."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    # Omni allows 60 per key, up to 500 per instance on request; a fraction shares one key between several
    # syncs. The top is high enough to switch pacing off (a local emulator, a proxy that paces for us).
    rate_limit_per_minute: float = Field(
        default=60.0,
        ge=0.01,
        le=1_000_000,
        title="Rate limit (requests per window per key)",
        description="Requests per rate window per API key. Omni allows 60 per minute per key unless support "
        "raised it (up to 500 per instance); a fraction such as 0.5 shares a key between syncs.",
    )
    rate_window_seconds: float = Field(
        default=60.0,
        ge=0.1,
        le=3600,
        title="Rate window (s)",
        description="The span the rate limit counts over; Omni's is one minute.",
    )
    rate_limit_margin: float = Field(
        default=0.0,
        ge=0,
        le=0.9,
        title="Rate limit margin",
        description="Share of each key's limit left unused for other tools using the same key.",
    )
    timeout: float = Field(
        default=30.0,
        ge=0.1,
        le=3600,
        title="Timeout (s)",
        description="Longest time one HTTP request (one attempt) may take, from connecting to the last "
        "byte of the answer.",
    )
    connect_timeout: float = Field(
        default=10.0,
        ge=0.1,
        le=600,
        title="Connect timeout (s)",
        description="Longest wait for a connection to Omni (TCP and TLS), within the timeout.",
    )
    # Backoff waits at most 30 s and a call's retries 120 s in all (``RetryPolicy``): more than 10 retries
    # could not happen in that budget.
    max_retries: int = Field(
        default=4,
        ge=0,
        le=10,
        title="Max retries",
        description="Retries of one request after the first attempt, on 429, 5xx and network errors.",
    )
    page_size: int = Field(
        default=100,
        ge=1,
        le=1000,
        title="Page size",
        description="Users asked for per list page.",
    )
    # A SCIM page of 1000 users with attributes is about 1 MiB.
    max_response_bytes: int = Field(
        default=32 * MIB,
        ge=1024,
        le=1024 * MIB,
        title="Max response size (bytes)",
        description="Largest answer read; a larger one is refused while it streams in.",
    )
    patch_form: PatchForm = Field(
        default=DEFAULT_PATCH_FORM,
        title="Patch form",
        description="How attribute changes are written: attribute_path (one path per attribute) or "
        "map_replace (the whole attribute map, for SCIM servers that do not take paths).",
    )

    def retry_policy(self) -> RetryPolicy:
        """``max_retries`` retries after the first attempt."""
        return RetryPolicy(max_attempts=self.max_retries + 1)

    def client_arguments(self) -> dict[str, Any]:
        """The ``OmniScimClient`` keyword arguments these settings mean (retries become a ``RetryPolicy``)."""
        return {**self.model_dump(exclude={"max_retries"}), "retry_policy": self.retry_policy()}


#: Every setting at its default (the client's keyword defaults).
DEFAULT_SETTINGS = ClientSettings()


def setting_info(name: str) -> FieldInfo:
    return ClientSettings.model_fields[name]


def setting_bounds(name: str) -> tuple[float | None, float | None]:
    """The ``(minimum, maximum)`` of a numeric setting (None when unbounded or not numeric)."""
    metadata = setting_info(name).metadata
    low = next((m.ge for m in metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in metadata if isinstance(m, annotated_types.Le)), None)
    return low, high  # type: ignore[return-value]


def setting_choices(name: str) -> tuple[str, ...] | None:
    """The allowed values of a setting that is a choice (a ``Literal``), else None."""
    annotation = setting_info(name).annotation
    return tuple(get_args(annotation)) if get_origin(annotation) is Literal else None


def setting_field(name: str, *, constrained: bool = True) -> Any:
    """A pydantic ``Field`` for a model that exposes the setting ``name`` (the Dagster resource and
    component): the same default, title and description, and (``constrained``) the same range."""
    info = setting_info(name)
    low, high = setting_bounds(name) if constrained else (None, None)
    return Field(default=info.default, title=info.title, description=info.description, ge=low, le=high)


def accepted_range(name: str) -> str | None:
    """``a finite number from 0.1 to 3,600`` for a bounded numeric field, from its constraints."""
    choices = setting_choices(name)
    if choices is not None:
        return "one of " + ", ".join(repr(choice) for choice in choices)
    low, high = setting_bounds(name)
    kind = "a whole number" if setting_info(name).annotation in (int, "int") else "a finite number"
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
