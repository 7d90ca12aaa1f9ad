"""The group-membership plan: (user, group) rows + current Omni users and groups -> per-membership actions and
one change per group. Pure: no I/O.

Users are matched by email with the one identity rule (``domain.identity``: NFC, surrounding spaces,
case). Group names go through the same rule: a group matches its exact name (NFC, stripped); a name with
the same identity key but another spelling (case) is a look-alike: reported, never guessed at, never
created beside the existing one. Only managed groups are read for changes or written.

In mirror mode every row's email and group must be readable (``read_memberships``): a member counts as
absent from the input only when every row could be read, so one unreadable row stops the run before any
write; and a member whose row was rejected (for any reason) is kept.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any

from omni_provider.domain.groups import OmniGroup, group_name_problem
from omni_provider.domain.identity import email_key, group_key, normalized_text, validate_user_id
from omni_provider.domain.models import OmniUser
from omni_provider.errors import OmniValidationError, PlanTooLargeError
from omni_provider.sync.engine.guards import resolve_max_changes
from omni_provider.sync.users.keys import KeyProblem, UnreadableKeysError, UserIndex, normalize_email

#: Without an explicit ``max_changes``, a mirror run may remove at most this share of the managed groups'
#: current memberships: an empty or broken source query must not strip everyone's access.
DEFAULT_MIRROR_REMOVAL_PCT = Fraction(10)
_MISSING = object()


class GroupSyncMode(StrEnum):
    #: Only add members; nobody is removed.
    ADD = "add"
    #: A managed group's members become exactly the input's: also removes.
    MIRROR = "mirror"


class MembershipAction(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"


WRITE_ACTIONS = frozenset({MembershipAction.ADD, MembershipAction.REMOVE})


@dataclass(frozen=True, slots=True)
class MembershipItem:
    #: 1-based input row; None for a mirror removal (a member absent from the input).
    row_number: int | None
    #: The normalised email (the raw text, clipped, when it is not an email).
    user: str
    group: str
    action: MembershipAction
    user_id: str | None = None
    #: None for a group this run creates.
    group_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class GroupChange:
    """Everything one group needs: written as one request (a POST for a new group, else a PATCH)."""

    group: str
    #: None: the group does not exist yet and is created with its members.
    group_id: str | None
    add: tuple[str, ...]
    remove: tuple[str, ...]
    #: Indexes of the plan items this change settles.
    items: tuple[int, ...]

    @property
    def creates(self) -> bool:
        return self.group_id is None


@dataclass(frozen=True, slots=True)
class GroupPlan:
    items: tuple[MembershipItem, ...]
    changes: tuple[GroupChange, ...]
    mode: GroupSyncMode
    managed_groups: tuple[str, ...]
    row_count: int
    #: Current members of the managed groups that exist: the base of "10%" and the mirror default guard.
    managed_memberships: int
    #: Email of each user id involved, for the ``display`` of added members and the report.
    emails: Mapping[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        counts = Counter(item.action for item in self.items)
        return {a.value: counts.get(a, 0) for a in MembershipAction} | {
            "groups_changed": len(self.changes),
            "groups_created": sum(1 for c in self.changes if c.creates),
        }

    @property
    def additions(self) -> int:
        return sum(1 for i in self.items if i.action is MembershipAction.ADD)

    @property
    def removals(self) -> int:
        return sum(1 for i in self.items if i.action is MembershipAction.REMOVE)


def managed_group_names(groups: Sequence[str] | str | None) -> list[str] | None:
    if groups is None:
        return None
    if isinstance(groups, str):
        groups = [groups]
    names: dict[str, str] = {}  # identity key -> the name as given (NFC, stripped)
    for raw in groups:
        problem = group_name_problem(raw)
        if problem is not None:
            raise OmniValidationError(f"groups: {raw!r}: {problem}")
        name = normalized_text(str(raw))
        first = names.setdefault(group_key(name), name)
        if first != name:
            raise OmniValidationError(
                f"groups: {first!r} and {name!r} name one group (they differ only in case, Unicode form or "
                "spaces); list it once, spelled as in Omni"
            )
    return list(names.values())


@dataclass
class MembershipRow:
    """One input row as read: the group name (NFC, stripped), the email's identity key when readable."""

    number: int
    user: str
    group: str
    #: The email key, or None when the email was not usable.
    key: str | None
    #: Why the row is rejected, if it is.
    reason: str | None = None
    #: The email and the group could be read (a row rejected later may still protect its member).
    readable: bool = True


def _read_row(number: int, row: Mapping[str, Any], user_column: str, group_column: str) -> MembershipRow:
    raw_user, raw_group = row.get(user_column, _MISSING), row.get(group_column, _MISSING)
    group_text = normalized_text(raw_group) if isinstance(raw_group, str) else ""
    if raw_user is _MISSING or raw_group is _MISSING:
        missing = user_column if raw_user is _MISSING else group_column
        return MembershipRow(number, "", group_text, None, f"missing column {missing!r}", readable=False)
    key = normalize_email(raw_user)
    problem = group_name_problem(raw_group)
    if problem is not None:
        shown = key if isinstance(key, str) else key.shown
        return MembershipRow(number, shown, str(raw_group)[:100], None, problem, readable=False)
    if isinstance(key, KeyProblem):
        return MembershipRow(number, key.shown, group_text, None, f"user: {key.reason}", readable=False)
    return MembershipRow(number, key, group_text, key)


def read_memberships(
    rows: Iterable[Mapping[str, Any]],
    *,
    user_column: str = "email",
    group_column: str = "group",
    mode: GroupSyncMode | str = GroupSyncMode.ADD,
) -> list[MembershipRow]:
    """Every row's email and group, after the input-wide checks that must stop a run before any request
    (the group sync's ``read_keys``): a column missing from every row is a configuration error; in mirror
    mode one row whose email or group cannot be read (null, empty, not text, not an email) refuses the
    whole run, since "absent from the input" is then unknowable."""
    mode = _mode(mode)
    if not user_column or not group_column or user_column == group_column:
        raise OmniValidationError("user_column and group_column must be two different column names")
    read = [_read_row(n, row, user_column, group_column) for n, row in enumerate(rows, start=1)]
    for column in (user_column, group_column):
        if read and all(r.reason == f"missing column {column!r}" for r in read):
            raise OmniValidationError(
                f"the column {column!r} is not in the input; set user_column / group_column to the "
                "columns holding the email and the group name. Nothing was sent."
            )
    bad = [r for r in read if not r.readable]
    if bad and mode is GroupSyncMode.MIRROR:
        reasons = Counter(str(r.reason) for r in bad)
        shown = ", ".join(str(r.number) for r in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise UnreadableKeysError(
            f"mirror mode refused: {len(bad)} of {len(read)} input rows have an unreadable email or group "
            f"({'; '.join(f'{n} {why}' for why, n in reasons.most_common(3))}; rows {shown}). A member "
            "counts as absent from the input only when every row can be read, so nobody was removed and "
            "nothing was sent. Fix or remove those rows.",
            column=f"{user_column}/{group_column}",
            unreadable=len(bad),
            rows=len(read),
        )
    return read


def _mode(mode: GroupSyncMode | str) -> GroupSyncMode:
    try:
        return GroupSyncMode(mode)
    except ValueError:
        raise OmniValidationError(f"mode must be 'add' or 'mirror', got {mode!r}") from None


def build_group_plan(
    rows: Iterable[Mapping[str, Any]] | Sequence[MembershipRow],
    users: Iterable[OmniUser],
    groups: Iterable[OmniGroup],
    *,
    user_column: str = "email",
    group_column: str = "group",
    managed_groups: Sequence[str] | str | None = None,
    mode: GroupSyncMode | str = GroupSyncMode.ADD,
    create_missing_groups: bool = False,
) -> GroupPlan:
    """One item per input row (plus one per mirror removal) and one ``GroupChange`` per group to write.
    ``rows`` may be what ``read_memberships`` returned (read once before any request)."""
    mode = _mode(mode)
    explicit = managed_group_names(managed_groups)
    listed: list[Any] = list(rows)
    if listed and all(isinstance(r, MembershipRow) for r in listed):
        read: list[MembershipRow] = listed
    else:
        read = read_memberships(listed, user_column=user_column, group_column=group_column, mode=mode)
    if explicit is not None:
        allowed = set(explicit)
        for r in read:
            if r.reason is None and r.group not in allowed:
                r.reason = f"group {r.group!r} is not one of the managed groups"
    managed = (
        explicit if explicit is not None else list(dict.fromkeys(r.group for r in read if r.reason is None))
    )

    user_list = list(users)
    index = UserIndex(user_list, "userName")
    users_by_id = {u.id.lower(): u for u in user_list}
    by_key: dict[str, list[OmniGroup]] = {}
    for g in groups:
        by_key.setdefault(group_key(g.display_name), []).append(g)
    spellings = Counter(group_key(name) for name in managed)

    # Resolve each managed group: an existing one, one to create, or why its rows are rejected. One
    # identity rule: a group with the same key but another spelling is a look-alike, never created beside.
    resolved: dict[str, OmniGroup | None] = {}
    refused: dict[str, str] = {}
    for name in managed:
        same_key = by_key.get(group_key(name), [])
        found = [g for g in same_key if normalized_text(g.display_name) == name]
        near = sorted({g.display_name.strip() for g in same_key} - {name})
        if len(found) == 1:
            resolved[name] = found[0]
        elif len(found) > 1:
            refused[name] = f"{len(found)} Omni groups are named {name!r}; refusing to guess"
        elif near:
            refused[name] = (
                f"no Omni group is named {name!r}; Omni has {near} (group names are matched exactly; a "
                "name differing only in case, Unicode form or spaces is never guessed at nor created beside)"
            )
        elif spellings[group_key(name)] > 1:
            others = sorted(n for n in managed if group_key(n) == group_key(name))
            refused[name] = f"the input spells this group several ways {others}; refusing to guess"
        elif create_missing_groups:
            resolved[name] = None
        else:
            refused[name] = f"no Omni group is named {name!r} (set create_missing_groups=True to create it)"

    items: list[MembershipItem] = []
    desired: dict[str, dict[str, int]] = {name: {} for name in resolved}  # group -> user id -> item
    # Email keys of users whose row was rejected, per group identity key: a mirror run keeps them.
    protected: dict[str, set[str]] = {}
    emails: dict[str, str] = {}
    for r in read:
        if r.reason is None and r.group in refused:
            r.reason = refused[r.group]
        if r.reason is not None:
            items.append(
                MembershipItem(r.number, r.user, r.group, MembershipAction.REJECTED, reason=r.reason)
            )
            if r.readable and r.user:
                protected.setdefault(group_key(r.group), set()).add(email_key(r.user))
            continue
        assert r.key is not None
        group = resolved[r.group]
        group_id = group.id if group is not None else None
        matches = index.get(r.key)
        if len(matches) != 1:
            why = (
                "no Omni user has this email"
                if not matches
                else f"{len(matches)} Omni users match this email"
            )
            items.append(
                MembershipItem(
                    r.number, r.user, r.group, MembershipAction.REJECTED, group_id=group_id, reason=why
                )
            )
            protected.setdefault(group_key(r.group), set()).add(r.key)
            continue
        user_id = matches[0].id.lower()
        emails[user_id] = matches[0].user_name
        seen = desired[r.group]
        if user_id in seen:
            first = items[seen[user_id]].row_number
            items.append(
                MembershipItem(
                    r.number,
                    r.user,
                    r.group,
                    MembershipAction.UNCHANGED,
                    user_id,
                    group_id,
                    reason=f"duplicate of row {first}",
                )
            )
            continue
        seen[user_id] = len(items)
        is_member = group is not None and user_id in group.member_ids
        action = MembershipAction.UNCHANGED if is_member else MembershipAction.ADD
        items.append(MembershipItem(r.number, r.user, r.group, action, user_id, group_id))

    if mode is GroupSyncMode.MIRROR:
        for name, group in resolved.items():
            if group is None:
                continue
            for member in group.members:
                user_id = member.value.strip().lower()
                if user_id in desired[name]:
                    continue
                known = users_by_id.get(user_id)
                email = known.user_name if known is not None else (member.display or user_id)
                emails.setdefault(user_id, email)
                key = email_key(email)
                if key in protected.get(group_key(name), ()):
                    items.append(
                        MembershipItem(
                            None,
                            key,
                            name,
                            MembershipAction.UNCHANGED,
                            user_id,
                            group.id,
                            reason="kept: this user's input row was rejected",
                        )
                    )
                    continue
                try:
                    validate_user_id(user_id)
                except OmniValidationError:
                    why = "cannot remove: the member id is not a user id (UUID)"
                    items.append(
                        MembershipItem(None, key, name, MembershipAction.REJECTED, None, group.id, reason=why)
                    )
                    continue
                items.append(
                    MembershipItem(
                        None,
                        key,
                        name,
                        MembershipAction.REMOVE,
                        user_id,
                        group.id,
                        reason="absent from the input (mirror)",
                    )
                )

    changes: list[GroupChange] = []
    for name, group in resolved.items():
        mine = [i for i, item in enumerate(items) if item.group == name and item.action in WRITE_ACTIONS]
        if not mine:
            continue
        add = tuple(items[i].user_id or "" for i in mine if items[i].action is MembershipAction.ADD)
        remove = tuple(items[i].user_id or "" for i in mine if items[i].action is MembershipAction.REMOVE)
        changes.append(GroupChange(name, group.id if group else None, add, remove, tuple(mine)))

    return GroupPlan(
        items=tuple(items),
        changes=tuple(changes),
        mode=mode,
        managed_groups=tuple(managed),
        row_count=len(read),
        managed_memberships=sum(len(g.members) for g in resolved.values() if g is not None),
        emails=emails,
    )


def check_group_plan(plan: GroupPlan, max_changes: int | str | None) -> None:
    """Refuse a plan whose blast radius is too big (``PlanTooLargeError``), before any write.

    ``max_changes`` bounds the membership changes (adds plus removes): a count, or a percentage of the
    managed groups' current memberships. Without it, a mirror run refuses to remove more than 10% of them.
    """
    base = plan.managed_memberships
    changes = plan.additions + plan.removals
    limit = resolve_max_changes(max_changes, base)
    detail = f"{plan.additions} additions, {plan.removals} removals"
    if limit is not None and changes > limit:
        raise PlanTooLargeError(
            f"the plan changes {changes} memberships ({detail}), more than max_changes={max_changes!r} "
            f"allows ({limit}; the managed groups hold {base} memberships); refusing. Check the source "
            "query, or raise max_changes.",
            changes=changes,
            limit=limit,
            total_users=base,
        )
    if max_changes is None and plan.mode is GroupSyncMode.MIRROR:
        default = math.floor(DEFAULT_MIRROR_REMOVAL_PCT * base / 100)
        if plan.removals > default:
            raise PlanTooLargeError(
                f"mirror mode would remove {plan.removals} of the {base} memberships of the managed groups, "
                f"more than {DEFAULT_MIRROR_REMOVAL_PCT}% ({default}); refusing, since removing members "
                "takes away their access (an empty or broken source query is the usual cause). Set "
                "max_changes explicitly to allow it.",
                changes=plan.removals,
                limit=default,
                total_users=base,
            )
