"""What an update would change, and whether Omni did what a write asked: pure, shared by ``update_user``,
dry runs and the sync's canary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omni_provider.domain.identity import emails_match
from omni_provider.domain.models import AttributeDefinition, AttributeValue, OmniUser, is_unset
from omni_provider.domain.values import values_equal
from omni_provider.errors import OmniWriteSemanticsError, OmniWrongUserError


@dataclass(frozen=True)
class ChangeSet:
    """Old and new values of what differs. Attributes are kept apart from the two user fields so an
    attribute that happens to be called ``active`` can never be mistaken for the flag."""

    attributes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    display_name: tuple[Any, Any] | None = None
    active: tuple[Any, Any] | None = None

    def __bool__(self) -> bool:
        return bool(self.attributes) or self.display_name is not None or self.active is not None

    def new_attributes(self) -> dict[str, AttributeValue]:
        return {name: new for name, (_old, new) in self.attributes.items()}

    def report(self) -> dict[str, dict[str, Any]]:
        """JSON-safe ``{name: {"old": .., "new": ..}}``; user fields as ``displayName`` / ``active``."""
        out = {name: {"old": old, "new": new} for name, (old, new) in self.attributes.items()}
        if self.display_name is not None:
            out["displayName"] = {"old": self.display_name[0], "new": self.display_name[1]}
        if self.active is not None:
            out["active"] = {"old": self.active[0], "new": self.active[1]}
        return out


def compute_changes(
    current: OmniUser,
    *,
    attributes: Mapping[str, AttributeValue] | None = None,
    display_name: str | None = None,
    active: bool | None = None,
    definitions: Mapping[str, AttributeDefinition] | None = None,
) -> ChangeSet:
    """What differs between ``current`` and the request; a ``None`` attribute value means unset."""
    changed = {
        name: (current.attributes.get(name), new)
        for name, new in (attributes or {}).items()
        if not values_equal(current.attributes.get(name), new, definitions.get(name) if definitions else None)
    }
    return ChangeSet(
        attributes=changed,
        display_name=(current.display_name, display_name)
        if display_name is not None and display_name != current.display_name
        else None,
        active=(current.active, active) if active is not None and active != current.active else None,
    )


@dataclass(frozen=True)
class ConcurrentChange:
    """An attribute the write did not send that holds another value afterwards: another writer's work
    between our read and our write, not damage (the write is still applied)."""

    attribute: str
    before: Any
    after: Any


@dataclass(frozen=True)
class _Problem:
    field: str
    old: Any
    new: Any
    problem: str
    hint: str


def _lost_hint(form: str) -> str:
    return (
        f"Omni may apply this PATCH form ({form!r}) as a replacement of the whole attribute map rather than "
        "a change of the keys sent. Restore the value on this user (the old value is above and in the "
        "report), then try the other form (connection extra 'patch_form') on a test user before syncing"
    )


def check_same_user(meant: OmniUser, got: OmniUser, *, what: str = "Omni's answer") -> None:
    """Raise ``OmniWriteSemanticsError`` unless ``got`` (a write's answer, a fresh read) is the user the
    write was meant for: the same id and, when both carry one, the same email by the identity rule. A
    mismatch means the state the write was based on describes another user (a restored snapshot, an Omni
    re-created at the same URL): the write must not be reported applied, and the run must stop."""
    if got.id.strip().lower() == meant.id.strip().lower() and (
        not meant.user_name or not got.user_name or emails_match(meant.user_name, got.user_name)
    ):
        return
    field_name = "id" if got.id.strip().lower() != meant.id.strip().lower() else "userName"
    raise OmniWrongUserError(
        user=meant.user_name or meant.id,
        field=field_name,
        old=f"{meant.user_name} ({meant.id})",
        new=f"{got.user_name} ({got.id})",
        problem=f"{what} names another user",
        hint="whether the sync's snapshot (or the listing it planned from) belongs to this Omni: an id "
        "may now belong to another user; diff against Omni (diff_against='omni') once",
    )


def judge_write(
    before: OmniUser,
    after: OmniUser,
    changes: ChangeSet,
    *,
    definitions: Mapping[str, AttributeDefinition] | None = None,
    form: str = "attribute_path",
    stale_base: bool = False,
) -> tuple[ConcurrentChange, ...]:
    """Judge a write on what it sent, against the state it was based on (``before``).

    Errors (``OmniWriteSemanticsError``, never retryable): a sent attribute or field that does not hold the
    value sent; an unsent attribute that was set and is now absent, or now equals its definition's default
    while it held something else; the display name or ``active`` changed although not sent. An unsent
    attribute that now holds another non-null value is another writer's change: returned, not raised.
    Without an attribute map in ``after`` only the user fields can be judged.

    ``stale_base``: ``before`` is what an earlier sync left (a snapshot of the managed attributes only,
    possibly days old), not a read of Omni. Then only what was sent is judged; an unsent attribute of
    ``before`` that differs now changed outside the sync since then, and is returned, not raised. (The
    sync sends the first write of each kind on a fresh read, judged in full, before it trusts a snapshot.)
    """

    def definition(name: str) -> AttributeDefinition | None:
        return definitions.get(name) if definitions else None

    check_same_user(before, after)
    who = after.user_name or before.user_name or after.id
    problems: list[_Problem] = []
    concurrent: list[ConcurrentChange] = []
    sent_fields = {"displayName": changes.display_name, "active": changes.active}
    for field_name, now, then in (
        ("displayName", after.display_name, before.display_name),
        ("active", after.active, before.active),
    ):
        sent = sent_fields[field_name]
        if sent is None and stale_base:
            continue  # a snapshot does not hold the user fields
        if sent is not None and now != sent[1]:
            problems.append(
                _Problem(
                    field_name,
                    then,
                    now,
                    f"Omni did not store the {field_name} sent ({sent[1]!r})",
                    "whether Omni accepts this field through PATCH; nothing else was changed",
                )
            )
        elif sent is None and now != then:
            problems.append(
                _Problem(
                    field_name,
                    then,
                    now,
                    f"the write changed {field_name} although it did not send it",
                    "Omni may reset fields a write leaves out; restore this user's "
                    f"{field_name} and set the connection extra 'patch_form' to the other form",
                )
            )
    if after.attributes_present:
        sent_attributes = changes.new_attributes()
        for name, value in sent_attributes.items():
            now = after.attributes.get(name)
            if not values_equal(now, value, definition(name)):
                problems.append(
                    _Problem(
                        name,
                        before.attributes.get(name),
                        now,
                        f"Omni did not store the value sent for attribute {name!r} "
                        f"({'an unset' if is_unset(value) else repr(value)})",
                        "the attribute's definition in Omni (type, multiple values) and whether "
                        f"Omni applies this PATCH form ({form!r}) as this client assumes",
                    )
                )
        for name, then in before.attributes.items():
            if name in sent_attributes or is_unset(then):
                continue
            now = after.attributes.get(name)
            if values_equal(now, then, definition(name)):
                continue
            default = getattr(definition(name), "default_value", None)
            if stale_base:
                concurrent.append(ConcurrentChange(name, then, now))
            elif is_unset(now):
                problems.append(
                    _Problem(
                        name, then, now, "an attribute the write did not send vanished", _lost_hint(form)
                    )
                )
            elif not is_unset(default) and values_equal(now, default, definition(name)):
                problems.append(
                    _Problem(
                        name,
                        then,
                        now,
                        "an attribute the write did not send was reset to its default",
                        _lost_hint(form),
                    )
                )
            else:
                concurrent.append(ConcurrentChange(name, then, now))
        for name, now in after.attributes.items():
            if name in sent_attributes or is_unset(now):
                continue
            if name not in before.attributes:
                if not stale_base:  # a snapshot's base knows only the managed attributes it lists
                    concurrent.append(ConcurrentChange(name, None, now))
            elif stale_base and is_unset(before.attributes[name]):
                concurrent.append(ConcurrentChange(name, None, now))
    if problems:
        first = problems[0]
        raise OmniWriteSemanticsError(
            user=who,
            field=first.field,
            old=first.old,
            new=first.new,
            problem=first.problem,
            hint=first.hint,
            more=len(problems) - 1,
        )
    return tuple(concurrent)
