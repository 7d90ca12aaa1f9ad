"""The recipients' plan: the attribute sync's planner (``sync.users.plan.build_plan``: the same value
coercion, email matching, key checks, duplicate and mirror rules) run against the recipients Omni lists,
each seen as a user holding its custom attributes (and ``omni_user_timezone``, the one settable system
attribute); the read-only system attributes of the listing are left out. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from omni_provider.domain.models import (
    USER_ATTRIBUTES_URN,
    AttributeDefinition,
    AttributeValue,
    OmniUser,
    is_unset,
)
from omni_provider.domain.recipients import EmailOnlyUser, is_system_attribute
from omni_provider.domain.values import WRITABLE_SYSTEM_ATTRIBUTES, conform_value
from omni_provider.errors import AttributeValueError
from omni_provider.sync.users.plan import PlanItem, SyncPlan, build_plan
from omni_provider.sync.users.spec import SyncSpec


def as_user(record: EmailOnlyUser, definitions: Mapping[str, AttributeDefinition] | None) -> OmniUser:
    """The recipient as the planner and the write judge see it: its email, its id and the attributes a
    write may carry (custom ones and ``omni_user_timezone``)."""
    attributes = {
        name: value
        for name, value in record.user_attributes.items()
        if name in WRITABLE_SYSTEM_ATTRIBUTES or not is_system_attribute(name, definitions)
    }
    return recipient_user(record.user_id, record.email, attributes)


def recipient_user(user_id: str, email: str, attributes: Mapping[str, Any]) -> OmniUser:
    return OmniUser.model_validate({"id": user_id, "userName": email, USER_ATTRIBUTES_URN: dict(attributes)})


def build_recipient_plan(
    rows: Iterable[Mapping[str, Any]],
    recipients: Iterable[OmniUser],
    spec: SyncSpec,
    definitions: Mapping[str, AttributeDefinition] | None,
) -> SyncPlan:
    """One item per input row (then, in mirror mode, one unset per absent recipient with values)."""
    return build_plan(rows, recipients, spec, definitions)


def _sendable(name: str, value: Any, definitions: Mapping[str, AttributeDefinition] | None) -> Any:
    """A value read from the listing, in the form its definition takes on a write (a Number listed as
    text goes back as a number); as read when there is no definition or it does not fit."""
    definition = definitions.get(name) if definitions else None
    if definition is None:
        return value
    try:
        return conform_value(value, definition)
    except AttributeValueError:
        return value


def upsert_attributes(
    item: PlanItem, base: OmniUser | None, definitions: Mapping[str, AttributeDefinition] | None
) -> dict[str, AttributeValue]:
    """The ``userAttributes`` of one recipient's upsert, right whether Omni merges or replaces them: its
    current custom attributes (as listed) plus the managed changes (``None`` unsets). System attributes
    are never sent, except ``omni_user_timezone`` when the sync manages it (then it is in the changes)."""
    body: dict[str, AttributeValue] = {}
    if base is not None:
        for name, value in base.attributes.items():
            if name not in WRITABLE_SYSTEM_ATTRIBUTES:
                body[name] = _sendable(name, value, definitions)
    body.update(item.attributes)
    return body


def written_state(
    user_id: str, email: str, base: OmniUser | None, sent: Mapping[str, AttributeValue]
) -> OmniUser:
    """The recipient after an upsert Omni accepted, the same under either meaning (the body carried its
    whole state): what the body set, and ``omni_user_timezone`` as it was when the body did not carry it (a
    system attribute, never sent from the base; kept only to describe the recipient)."""
    held: dict[str, Any] = {name: value for name, value in sent.items() if not is_unset(value)}
    if base is not None:
        for name in WRITABLE_SYSTEM_ATTRIBUTES:
            if name not in sent and not is_unset(base.attributes.get(name)):
                held[name] = base.attributes[name]
    return recipient_user(user_id, email, held)
