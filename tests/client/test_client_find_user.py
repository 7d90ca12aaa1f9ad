"""``find_user_by_email``: the filter sent, the client-side re-check, ambiguity."""

from __future__ import annotations

import json
import re
import unicodedata

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omni_fakes import FakeOmni, list_json, params_of, user_json

from omni_provider.client import AmbiguousUserError, OmniValidationError
from omni_provider.domain.identity import scim_string_literal


def _literal(filter_text: str) -> str:
    """Decode the string literal of ``userName eq "..."`` with JSON string rules (RFC 7644 3.4.2.2)."""
    match = re.fullmatch(r'userName eq (".*")', filter_text, re.DOTALL)
    assert match, filter_text
    return json.loads(match.group(1))


@pytest.mark.parametrize(
    "email",
    [
        "alice@example.com",
        "o'brien+tag@example.com",
        'we"ird@example.com',
        "back\\slash@example.com",
        'both\\"mixed"\\@example.com',
        "ümlaut@exämple.com",
    ],
)
def test_filter_is_escaped_and_url_encoded(make_client, email: str) -> None:
    omni = FakeOmni()
    omni.add(email.upper())
    client, rec = make_client(omni)

    user = client.find_user_by_email(email)

    assert user is not None and user.user_name == email.upper()
    # One request per Unicode spelling: the email as given (NFC), then its NFD form when that differs.
    spellings = list(dict.fromkeys([email, unicodedata.normalize("NFD", email)]))
    assert [_literal(params_of(r)["filter"]) for r in rec.requests] == spellings
    for request in rec.requests:
        raw = request.url.query.decode("ascii")
        assert '"' not in raw and " " not in raw and "\\" not in raw


def test_filter_text_exact(make_client) -> None:
    client, rec = make_client(FakeOmni())
    client.find_user_by_email('a"b\\c@example.com')
    assert params_of(rec.requests[0])["filter"] == r'userName eq "a\"b\\c@example.com"'


def test_found_case_insensitively(make_client) -> None:
    omni = FakeOmni()
    stored = omni.add("Alice.Smith@Example.COM", attributes={"region": "eu"})
    client, _ = make_client(omni)
    user = client.find_user_by_email("  alice.smith@example.com ")
    assert user is not None
    assert user.id == stored["id"]
    assert user.attributes == {"region": "eu"}


def test_not_found_is_none(make_client) -> None:
    client, rec = make_client(FakeOmni())
    assert client.find_user_by_email("nobody@example.com") is None
    assert rec.count() == 1


def test_lenient_server_match_is_rechecked(make_client) -> None:
    """A server that answers the filter with someone else must not make us pick that user."""

    def handler(request: httpx.Request) -> httpx.Response:
        others = [user_json("bob@example.com"), user_json("alice@example.com.evil.test")]
        return httpx.Response(200, json=list_json(others, 2, 1))

    client, _ = make_client(handler)
    assert client.find_user_by_email("alice@example.com") is None


def test_two_matches_are_ambiguous(make_client) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        twins = [user_json("alice@example.com"), user_json("ALICE@example.com")]
        return httpx.Response(200, json=list_json(twins, 2, 1))

    client, _ = make_client(handler)
    with pytest.raises(AmbiguousUserError) as info:
        client.find_user_by_email("Alice@Example.com")
    assert info.value.count == 2


def test_match_among_lenient_results_on_later_page(make_client) -> None:
    wanted = user_json("carol@example.com")
    pages = {1: [user_json("x@example.com")], 2: [wanted]}

    def handler(request: httpx.Request) -> httpx.Response:
        start = int(params_of(request)["startIndex"])
        return httpx.Response(200, json=list_json(pages.get(start, []), 2, start))

    client, rec = make_client(handler)
    user = client.find_user_by_email("carol@example.com")
    assert user is not None and user.id == wanted["id"]
    assert rec.count() == 2


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "no-at-sign", "@example.com", "a@", "a@b", "a b@example.com", "a@exa\nmple.com", 42, None],
)
def test_bad_emails_refused_before_any_request(make_client, bad: object) -> None:
    client, rec = make_client(FakeOmni())
    with pytest.raises(OmniValidationError):
        client.find_user_by_email(bad)  # type: ignore[arg-type]
    assert rec.count() == 0


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, exclude_characters="\x7f"), max_size=60))
def test_string_literal_round_trips_as_json(text: str) -> None:
    literal = scim_string_literal(text)
    assert literal.startswith('"') and literal.endswith('"')
    assert json.loads(literal) == text
