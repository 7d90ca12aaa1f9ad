"""Runtime settings of the emulator.

Everything a test or benchmark may want to vary lives here, so one object describes a run.
The admin endpoint ``POST /_emulator/config`` patches a live instance through ``apply_patch``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

from .ratelimit import RATE_WINDOW_MODES, RateWindowMode
from .recipient_store import UPSERT_MODES, UpsertMode

PutMode = Literal["merge", "replace"]
PUT_MODES: tuple[PutMode, ...] = ("merge", "replace")
#: "assumed": a no-path replace of the attribute map merges key by key and per-attribute paths work (what
#: the client assumes). "other": the opposite for each form: a no-path replace replaces the whole map, and
#: a per-attribute path under the attribute URN is refused with 400.
PatchSemantics = Literal["assumed", "other"]
PATCH_SEMANTICS: tuple[PatchSemantics, ...] = ("assumed", "other")

# Fault kinds drawn independently for every /api request (see faults.py).
FAULT_KINDS: tuple[str, ...] = (
    "error_500",
    "error_502",
    "error_503",
    "error_504",
    "burst_429",
    "drop_connection",
    "slow",
    "lost_response",
)

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

# Keys that the admin endpoint may change at runtime. Credentials and the state file are
# deliberately absent: the admin routes are unauthenticated.
PATCHABLE_FIELDS = frozenset(
    {
        "put_mode",
        "max_page_size",
        "strict_attributes",
        "rate_limit",
        "rate_window",
        "rate_window_mode",
        "rate_limit_enabled",
        "retry_after_header",
        "faults",
        "fault_seed",
        "fault_methods",
        "burst_429_length",
        "slow_seconds",
        "patch_semantics",
        "list_attribute_maps",
        "list_churn",
        "group_list_churn",
        "concurrent_writer",
        "group_patch_mode",
        "patch_answer",
        "email_only_upsert",
    }
)


@dataclasses.dataclass
class EmulatorConfig:
    """Behaviour switches of one emulator instance.

    ``api_keys`` are Organization API keys (accepted everywhere); ``personal_tokens`` are
    personal access tokens (rejected on SCIM routes, accepted on ``/api/v1``).
    ``put_mode`` picks between the legacy ("merge") and current ("replace") PUT semantics.
    ``faults`` maps a kind from ``FAULT_KINDS`` to a per-request probability.
    """

    api_keys: list[str] = dataclasses.field(default_factory=lambda: ["omni-emulator-key"])
    personal_tokens: list[str] = dataclasses.field(default_factory=list)
    put_mode: PutMode = "replace"
    max_page_size: int = 100
    strict_attributes: bool = True
    rate_limit: int = 60
    rate_window: float = 60.0
    #: How the limit is counted: "sliding" (any window-length span) or "fixed" (consecutive windows).
    rate_window_mode: RateWindowMode = "sliding"
    rate_limit_enabled: bool = True
    retry_after_header: bool = False
    faults: dict[str, float] = dataclasses.field(default_factory=dict)
    fault_seed: int | None = None
    # None means every method; otherwise only these (upper-case) methods see faults.
    fault_methods: frozenset[str] | None = None
    burst_429_length: int = 3
    slow_seconds: float = 0.5
    state_file: Path | None = None
    # How often (seconds) the background saver checks for unsaved writes.
    persist_interval: float = 0.5
    patch_semantics: PatchSemantics = "assumed"
    #: False: list responses leave out each user's attribute map (SCIM makes it optional).
    list_attribute_maps: bool = True
    #: Users deleted and created between two list pages, once: ``{"after_page": k, "delete": n,
    #: "create": m}`` deletes the n oldest users and creates m new ones after the k-th unfiltered page
    #: (with ``"repeat": true``, after every k-th page: a list that never settles).
    list_churn: dict[str, int] | None = None
    #: The same for groups, played after unfiltered group list pages (counted on their own).
    group_list_churn: dict[str, int] | None = None
    #: Another writer acting on every PATCH: ``{"attribute": name, "value": v, "when": "before"|"after"}``
    #: sets that attribute of the target user just before the PATCH is applied (or just after, so the
    #: answer shows it); ``value`` null unsets it.
    concurrent_writer: dict[str, Any] | None = None
    # "documented", or "replace_members": a group PATCH ``add`` replaces the member list (see groups.py).
    group_patch_mode: Literal["documented", "replace_members"] = "documented"
    #: "body": a PATCH (user or group) answers 200 with the resource; "no_content": 204 and no body (SCIM
    #: allows it), after applying the change.
    patch_answer: Literal["body", "no_content"] = "body"
    #: What an email-only upsert does to an existing recipient's attributes (undocumented): "merge" or
    #: "replace" (see ``recipient_store.UpsertMode``), like ``put_mode`` for the SCIM PUT.
    email_only_upsert: UpsertMode = "merge"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError on settings that would make the emulator misbehave silently."""
        if not self.api_keys or any(not isinstance(k, str) or not k for k in self.api_keys):
            raise ValueError("api_keys must be a non-empty list of non-empty strings")
        if any(not isinstance(t, str) or not t for t in self.personal_tokens):
            raise ValueError("personal_tokens must be non-empty strings")
        if set(self.api_keys) & set(self.personal_tokens):
            raise ValueError("a token cannot be both an API key and a personal token")
        if self.put_mode not in PUT_MODES:
            raise ValueError(f"put_mode must be one of {PUT_MODES}")
        if self.email_only_upsert not in UPSERT_MODES:
            raise ValueError(f"email_only_upsert must be one of {UPSERT_MODES}")
        if self.rate_window_mode not in RATE_WINDOW_MODES:
            raise ValueError(f"rate_window_mode must be one of {RATE_WINDOW_MODES}")
        if self.patch_answer not in ("body", "no_content"):
            raise ValueError("patch_answer must be 'body' or 'no_content'")
        if self.group_patch_mode not in ("documented", "replace_members"):
            raise ValueError("group_patch_mode must be 'documented' or 'replace_members'")
        # Upper bounds too: these can be set over the unauthenticated admin route, and one request must
        # not be able to hang the emulator (slow_seconds=1e9) or make every page huge.
        _check_int(self.max_page_size, "max_page_size", minimum=1, maximum=10_000)
        _check_int(self.rate_limit, "rate_limit", minimum=1, maximum=1_000_000)
        _check_int(self.burst_429_length, "burst_429_length", minimum=1, maximum=10_000)
        _check_positive(self.rate_window, "rate_window", maximum=86_400)
        _check_positive(self.persist_interval, "persist_interval", maximum=3600)
        if not _is_number(self.slow_seconds) or not 0 <= self.slow_seconds <= 60:
            raise ValueError("slow_seconds must be from 0 to 60")
        if self.patch_semantics not in PATCH_SEMANTICS:
            raise ValueError(f"patch_semantics must be one of {PATCH_SEMANTICS}")
        _check_churn(self.list_churn, "list_churn")
        _check_churn(self.group_list_churn, "group_list_churn")
        _check_writer(self.concurrent_writer)
        for name in ("strict_attributes", "rate_limit_enabled", "retry_after_header", "list_attribute_maps"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a boolean")
        for kind, prob in self.faults.items():
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
            if not _is_number(prob) or not 0.0 <= prob <= 1.0:
                raise ValueError(f"fault probability for {kind} must be within [0, 1]")
        if self.fault_seed is not None and (
            not isinstance(self.fault_seed, int) or isinstance(self.fault_seed, bool)
        ):
            raise ValueError("fault_seed must be an integer or null")
        if self.fault_methods is not None:
            unknown = set(self.fault_methods) - HTTP_METHODS
            if unknown:
                raise ValueError(f"unknown fault_methods: {sorted(unknown)}")

    def apply_patch(self, patch: Mapping[str, Any]) -> None:
        """Apply a partial update (from the admin endpoint); all-or-nothing."""
        unknown = set(patch) - PATCHABLE_FIELDS
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)} at runtime")
        changes: dict[str, Any] = dict(patch)
        if "faults" in changes:
            faults = changes["faults"]
            if not isinstance(faults, Mapping):
                raise ValueError("faults must be an object of kind -> probability")
            changes["faults"] = dict(faults)
        if "fault_methods" in changes and changes["fault_methods"] is not None:
            methods = changes["fault_methods"]
            if not isinstance(methods, list | tuple | set | frozenset):
                raise ValueError("fault_methods must be a list of HTTP methods or null")
            changes["fault_methods"] = frozenset(str(m).upper() for m in methods)
        candidate = dataclasses.replace(self, **changes)  # runs validate() via __post_init__
        for name in changes:
            setattr(self, name, getattr(candidate, name))

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to expose on the unauthenticated admin routes (no secrets)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in ("api_keys", "personal_tokens"):
                out[f"{field.name}_count"] = len(value)
            elif isinstance(value, frozenset):
                out[field.name] = sorted(value)
            elif isinstance(value, Path):
                out[field.name] = str(value)
            else:
                out[field.name] = value
        return out


def _is_number(value: object) -> bool:
    # NaN fails every comparison, so it would pass "< 0" checks: refuse it (and infinities) here.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(value: object, name: str, *, minimum: int, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise ValueError(f"{name} must be an integer from {minimum} to {maximum}")


def _check_positive(value: object, name: str, *, maximum: float) -> None:
    if not _is_number(value) or not 0 < cast(float, value) <= maximum:
        raise ValueError(f"{name} must be a positive number up to {maximum:g}")


#: Bounds of ``list_churn`` and ``group_list_churn`` (the admin route is unauthenticated: one request must
#: stay cheap).
MAX_PAGES_FOR_CHURN = 100_000
MAX_CHURN_USERS = 10_000


def _check_churn(churn: object, name: str) -> None:
    if churn is None:
        return
    if not isinstance(churn, Mapping) or set(churn) - {"after_page", "delete", "create", "repeat"}:
        raise ValueError(f"{name} must be an object with after_page, delete, create and repeat")
    _check_int(churn.get("after_page"), f"{name}.after_page", minimum=1, maximum=MAX_PAGES_FOR_CHURN)
    _check_int(churn.get("delete", 0), f"{name}.delete", minimum=0, maximum=MAX_CHURN_USERS)
    _check_int(churn.get("create", 0), f"{name}.create", minimum=0, maximum=MAX_CHURN_USERS)
    if not isinstance(churn.get("repeat", False), bool):
        raise ValueError(f"{name}.repeat must be a boolean")


def _check_writer(writer: object) -> None:
    if writer is None:
        return
    if not isinstance(writer, Mapping) or set(writer) - {"attribute", "value", "when"}:
        raise ValueError("concurrent_writer must be an object with attribute, value and when")
    if not isinstance(writer.get("attribute"), str) or not writer.get("attribute"):
        raise ValueError("concurrent_writer.attribute must be an attribute name")
    if writer.get("when", "before") not in ("before", "after"):
        raise ValueError("concurrent_writer.when must be 'before' or 'after'")
