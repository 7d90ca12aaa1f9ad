"""Match keys: normalising the row's key column and indexing current Omni users by the same key.

Emails and ids are checked and compared by the rules in ``omni_provider.domain.identity`` (NFC, stripped,
``str.lower`` for emails; canonical UUIDs for ids), the very functions the client applies before sending,
so a row the planner accepts is never refused by the client at write time. A key that breaks them is a
``KeyProblem``: the row is rejected, and it can never reach a URL path.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from omni_provider.domain.identity import email_key, email_problem, normalize_email_text, user_id_problem
from omni_provider.domain.models import OmniUser
from omni_provider.errors import OmniValidationError
from omni_provider.sync.users.spec import MatchOn, SyncMode, SyncSpec, item_nouns

_SHOWN_KEY_CHARS = 100
_MISSING = object()
_ID_EXAMPLE = "9e8719d9-276a-4964-9395-a493189a247c"
_REASONS_SHOWN = 3
_ROWS_SHOWN = 10


@dataclass(frozen=True, slots=True)
class KeyProblem:
    reason: str
    #: The raw key, clipped, for the report.
    shown: str


def _clip(text: str) -> str:
    return text if len(text) <= _SHOWN_KEY_CHARS else text[: _SHOWN_KEY_CHARS - 1] + "…"


def normalize_key(row: Mapping[str, Any], spec: SyncSpec) -> str | KeyProblem:
    """The row's normalised match key, or why the row cannot be matched."""
    raw = row.get(spec.key, _MISSING)
    if raw is _MISSING:
        return KeyProblem(f"missing column {spec.key!r}", "")
    if spec.match_on == "id":
        return normalize_id(raw)
    return normalize_email(raw)


def normalize_email(raw: object) -> str | KeyProblem:
    if raw is None:
        return KeyProblem("empty match key", "")
    if not isinstance(raw, str):
        return KeyProblem(f"match key must be text (an email), got {type(raw).__name__}", _clip(repr(raw)))
    text = normalize_email_text(raw)
    if not text:
        return KeyProblem("empty match key", "")
    problem = email_problem(text)
    if problem is not None:
        return KeyProblem(f"not an email: {problem}", _clip(text))
    return email_key(text)


def normalize_id(raw: object) -> str | KeyProblem:
    if raw is None:
        return KeyProblem("empty match key", "")
    if isinstance(raw, uuid.UUID):
        return str(raw)
    if not isinstance(raw, str):
        return KeyProblem(f"match key must be a user id (UUID), got {type(raw).__name__}", _clip(repr(raw)))
    text = raw.strip()
    if not text:
        return KeyProblem("empty match key", "")
    problem = user_id_problem(text)
    if problem is not None:
        # Strict on purpose: the id goes into a URL path, so '/', '..', '?' or '#' must never get through.
        return KeyProblem(f"not an Omni user id: {problem} (expected a UUID like {_ID_EXAMPLE})", _clip(text))
    return text.lower()


def user_key(user: OmniUser, match_on: MatchOn) -> str:
    return _user_id_key(user) if match_on == "id" else email_key(user.user_name)


_USER_NAME = attrgetter("user_name")


def _user_id_key(user: OmniUser) -> str:
    return user.id.strip().lower()


class UserIndex:
    """Current Omni users by normalised key; a key with several distinct users is ambiguous."""

    def __init__(self, users: Iterable[OmniUser], match_on: MatchOn) -> None:
        # A key's one user is held as it is, a list only for a key with several (rare): no list per user.
        self._several = 0  # users beyond the first under their key
        users = users if isinstance(users, list) else list(users)
        # map() rather than a loop calling a helper: no Python frame per user beyond the key rule itself.
        keys = list(
            map(email_key, map(_USER_NAME, users)) if match_on == "userName" else map(_user_id_key, users)
        )
        self._by_key: dict[str, OmniUser | list[OmniUser]] = dict(zip(keys, users, strict=True))
        if len(self._by_key) == len(users):
            return  # every key is one user's: the usual case, indexed without a loop
        by_key = self._by_key = {}
        for key, user in zip(keys, users, strict=True):
            found = by_key.get(key)
            if found is None:
                by_key[key] = user
            elif type(found) is not list:
                if found.id != user.id:  # type: ignore[union-attr]
                    by_key[key] = [found, user]  # type: ignore[list-item]
                    self._several += 1
            elif all(other.id != user.id for other in found):
                found.append(user)
                self._several += 1
            # else: the same user listed twice (pages shifting during the read); it is still one user.

    def get(self, key: str) -> Sequence[OmniUser]:
        found = self._by_key.get(key)
        if found is None:
            return ()
        return found if type(found) is list else (found,)  # type: ignore[return-value]

    def single(self, key: str) -> OmniUser | None:
        """The one user with this key; None when there is none or several."""
        found = self._by_key.get(key)
        return None if type(found) is list else found  # type: ignore[return-value]

    def singles(self, keys: Iterable[str | KeyProblem]) -> list[OmniUser | None]:
        """``single`` for each key (a ``KeyProblem`` has no user)."""
        get = self._by_key.get
        return [None if type(found := get(key)) is list else found for key in keys]  # type: ignore[arg-type, misc]

    def items(self) -> Iterator[tuple[str, Sequence[OmniUser]]]:
        for key, found in self._by_key.items():
            yield key, found if type(found) is list else (found,)  # type: ignore[misc]

    @property
    def user_count(self) -> int:
        return len(self._by_key) + self._several


class UnreadableKeysError(OmniValidationError):
    """Mirror mode with input rows whose key cannot be read: "absent from the input" is then unknowable."""

    def __init__(self, message: str, *, column: str, unreadable: int, rows: int) -> None:
        super().__init__(message)
        self.column = column
        self.unreadable = unreadable
        self.rows = rows


def read_keys(rows: Sequence[Mapping[str, Any]], spec: SyncSpec) -> list[str | KeyProblem]:
    """Every row's key, after the input-wide checks that must stop a run before any request.

    - The key column missing from every row is a configuration error in any mode (a renamed column or a
      wrong ``key_column``), not a reason to reject each row.
    - In mirror mode every row's key must be readable: a user counts as absent from the input only when
      every input row's key could be read, so one null, non-text or malformed key refuses the whole run
      (the alternative, unsetting a user whose row was unreadable, is the harm mirror mode must never do).
    """
    column = spec.key
    normalize = normalize_id if spec.match_on == "id" else normalize_email
    absent = KeyProblem(f"missing column {column!r}", "")
    keys = [absent if (raw := row.get(column, _MISSING)) is _MISSING else normalize(raw) for row in rows]
    if KeyProblem not in set(map(type, keys)):  # the usual case, without a Python loop over the rows
        return keys
    problems = [(n, k) for n, k in enumerate(keys, start=1) if type(k) is KeyProblem]
    missing = f"missing column {spec.key!r}"
    if sum(1 for _, k in problems if k.reason == missing) == len(keys):
        columns = sorted({str(c) for row in rows[:1] for c in row})
        raise OmniValidationError(
            f"the key column {spec.key!r} is not in the input (its columns: {', '.join(columns) or 'none'}); "
            f"set key_column to the column holding the {'email' if spec.match_on == 'userName' else 'id'}, "
            "or fix the query's column names. Nothing was sent."
        )
    if spec.mode is SyncMode.MIRROR:
        raise UnreadableKeysError(
            _unreadable_message(problems, len(keys), spec.key, item_nouns(spec.item_noun)[1][:-1]),
            column=spec.key,
            unreadable=len(problems),
            rows=len(keys),
        )
    return keys


def _unreadable_message(
    problems: Sequence[tuple[int, KeyProblem]], total: int, column: str, noun: str
) -> str:
    reasons = Counter(k.reason for _, k in problems)
    by_reason = "; ".join(f"{count} {reason}" for reason, count in reasons.most_common(_REASONS_SHOWN))
    if len(reasons) > _REASONS_SHOWN:
        by_reason += f"; {len(reasons) - _REASONS_SHOWN} other kinds"
    numbers = [n for n, _ in problems]
    shown = ", ".join(map(str, numbers[:_ROWS_SHOWN])) + (" ..." if len(numbers) > _ROWS_SHOWN else "")
    return (
        f"mirror mode refused: {len(problems)} of {total} input rows have an unreadable key in column "
        f"{column!r} ({by_reason}; rows {shown}). A {noun} counts as absent from the input only when every "
        f"row's key can be read, so no {noun} was unset and nothing was sent. Fix or remove those rows."
    )
