"""``update_user``: one GET, one PATCH carrying only what changes, and a check of Omni's answer."""

from __future__ import annotations

import httpx
import pytest
from omni_fakes import PATCH_SCHEMA, USERS, FakeOmni, body_of, user_json

from omni_provider.client import (
    USER_ATTRIBUTES_URN,
    AttributeDefinition,
    OmniConfigurationError,
    OmniNotFoundError,
    OmniUnexpectedStateError,
    OmniUser,
    OmniWriteSemanticsError,
)

ATTRS = {"region": "us-east", "level": 3, "teams": ["a", "b"], "cost_center": "cc-1"}


@pytest.fixture
def seeded(fake_omni: FakeOmni) -> dict:
    return fake_omni.add("dana@example.com", display_name="Dana", active=True, attributes=dict(ATTRS))


def _patch_value(rec) -> dict:
    """What the one PATCH asked for, as ``{displayName?, active?, URN: {name: value}}`` whichever form it
    used (a ``remove`` reads as ``None``); the form itself is checked in ``test_patch_forms``."""
    (body,) = rec.bodies("PATCH")
    assert body["schemas"] == [PATCH_SCHEMA]
    ops = body["Operations"]
    if len(ops) == 1 and "path" not in ops[0]:
        assert ops[0]["op"] == "replace"
        return ops[0]["value"]
    value: dict = {}
    for op in ops:
        path = op["path"]
        if path in ("displayName", "active"):
            value[path] = op["value"]
        else:
            name = path.removeprefix(USER_ATTRIBUTES_URN + ":")
            value.setdefault(USER_ATTRIBUTES_URN, {})[name] = None if op["op"] == "remove" else op["value"]
    return value


def test_one_patch_with_only_changed_keys(make_client, fake_omni, seeded) -> None:
    client, rec = make_client(fake_omni)

    result = client.update_user(
        seeded["id"], attributes={"region": "eu-west", "level": 3, "teams": ["a", "b"], "new_key": "x"}
    )

    assert rec.methods() == ["GET", "PATCH"]
    assert rec.requests[1].url.path == f"{USERS}/{seeded['id']}"
    assert _patch_value(rec) == {USER_ATTRIBUTES_URN: {"region": "eu-west", "new_key": "x"}}
    assert result.action == "updated"
    assert sorted(result.changed_keys) == ["new_key", "region"]
    assert result.changes.attributes["region"] == ("us-east", "eu-west")
    assert result.changes.attributes["new_key"] == (None, "x")
    assert result.user.attributes == {**ATTRS, "region": "eu-west", "new_key": "x"}


def test_unset_sends_remove_ops_by_default(make_client, fake_omni, seeded) -> None:
    client, rec = make_client(fake_omni)
    result = client.update_user(seeded["id"], attributes={"cost_center": None, "teams": []})
    (body,) = rec.bodies("PATCH")
    assert body["Operations"] == [
        {"op": "remove", "path": f"{USER_ATTRIBUTES_URN}:cost_center", "value": None},
        {"op": "remove", "path": f"{USER_ATTRIBUTES_URN}:teams", "value": None},
    ]
    assert "cost_center" not in result.user.attributes
    assert result.user.attributes["region"] == "us-east"


def test_unset_sends_null_in_the_map_form(make_client, fake_omni, seeded) -> None:
    client, rec = make_client(fake_omni, patch_form="map_replace")
    result = client.update_user(seeded["id"], attributes={"cost_center": None, "teams": []})
    value = _patch_value(rec)
    assert value == {USER_ATTRIBUTES_URN: {"cost_center": None, "teams": []}}
    assert value[USER_ATTRIBUTES_URN]["cost_center"] is None
    assert "cost_center" not in result.user.attributes
    assert result.user.attributes["region"] == "us-east"


@pytest.mark.parametrize(
    ("form", "operations"),
    [
        (
            "attribute_path",
            [
                {"op": "replace", "path": "displayName", "value": "D"},
                {"op": "replace", "path": f"{USER_ATTRIBUTES_URN}:region", "value": "eu-west"},
                {"op": "remove", "path": f"{USER_ATTRIBUTES_URN}:level", "value": None},
            ],
        ),
        (
            "map_replace",
            [
                {
                    "op": "replace",
                    "value": {"displayName": "D", USER_ATTRIBUTES_URN: {"region": "eu-west", "level": None}},
                }
            ],
        ),
    ],
)
def test_patch_forms(make_client, fake_omni, seeded, form, operations) -> None:
    client, rec = make_client(fake_omni, patch_form=form)
    client.update_user(seeded["id"], attributes={"region": "eu-west", "level": None}, display_name="D")
    (body,) = rec.bodies("PATCH")
    assert body == {"schemas": [PATCH_SCHEMA], "Operations": operations}


def test_default_patch_form_is_per_attribute_paths(make_client, fake_omni) -> None:
    client, _ = make_client(fake_omni)
    assert client.patch_form == "attribute_path"
    with pytest.raises(OmniConfigurationError, match="patch_form"):
        make_client(fake_omni, patch_form="json_patch")


def test_unset_of_absent_key_is_no_change(make_client, fake_omni, seeded) -> None:
    client, rec = make_client(fake_omni)
    result = client.update_user(seeded["id"], attributes={"never_set": None, "also_never": ""})
    assert rec.methods() == ["GET"]
    assert result.action == "unchanged"


def test_no_write_when_nothing_changes(make_client, fake_omni, seeded) -> None:
    client, rec = make_client(fake_omni)
    result = client.update_user(
        seeded["id"],
        attributes={"region": "us-east", "level": "3", "teams": ["b", "a"]},  # "3" vs 3, order of a list
        display_name="Dana",
        active=True,
    )
    assert rec.methods() == ["GET"]
    assert result.action == "unchanged"
    assert not result.changes
    assert result.changed_keys == []


def test_display_name_and_active(make_client, fake_omni, seeded) -> None:
    client, rec = make_client(fake_omni)
    result = client.update_user(seeded["id"], display_name="Dana Scully", active=False)
    assert _patch_value(rec) == {"displayName": "Dana Scully", "active": False}
    assert result.user.display_name == "Dana Scully"
    assert result.user.active is False
    assert result.user.attributes == ATTRS
    assert result.changes.report() == {
        "displayName": {"old": "Dana", "new": "Dana Scully"},
        "active": {"old": True, "new": False},
    }


def test_unchanged_display_name_not_sent(make_client, fake_omni, seeded) -> None:
    client, rec = make_client(fake_omni)
    client.update_user(seeded["id"], display_name="Dana", active=True, attributes={"level": 4})
    assert _patch_value(rec) == {USER_ATTRIBUTES_URN: {"level": 4}}


def test_attribute_named_active_is_not_the_flag(make_client, fake_omni, seeded) -> None:
    client, rec = make_client(fake_omni)
    client.update_user(seeded["id"], attributes={"active": "yes"})
    assert _patch_value(rec) == {USER_ATTRIBUTES_URN: {"active": "yes"}}


def test_user_object_with_attributes_skips_get(make_client, fake_omni, seeded) -> None:
    client, rec = make_client(fake_omni)
    listed = client.list_users()[0]
    rec.requests.clear()
    client.update_user(listed, attributes={"region": "ap-south"})
    assert rec.methods() == ["PATCH"]


def test_user_object_without_attribute_map_is_read_first(make_client, fake_omni, seeded) -> None:
    client, rec = make_client(fake_omni)
    bare = OmniUser.model_validate(user_json("dana@example.com", user_id=seeded["id"], with_attributes=False))
    assert not bare.attributes_present
    client.update_user(bare, attributes={"region": "ap-south"})
    assert rec.methods() == ["GET", "PATCH"]
    # Without the GET, "level" etc. would have looked unset and a wrong diff could follow.
    assert _patch_value(rec) == {USER_ATTRIBUTES_URN: {"region": "ap-south"}}


def test_number_definitions_compare_numerically(make_client, fake_omni) -> None:
    user = fake_omni.add("n@example.com", attributes={"quota": "10.50"})
    defs = {"quota": AttributeDefinition(name="quota", type="Number")}
    client, rec = make_client(fake_omni)
    result = client.update_user(user["id"], attributes={"quota": 10.5}, definitions=defs)
    assert result.action == "unchanged"
    assert rec.methods() == ["GET"]


def test_patch_answer_dropping_untouched_key_is_reported(make_client, fake_omni, seeded) -> None:
    def drop_teams(request: httpx.Request) -> httpx.Response | None:
        if request.method != "PATCH":
            return None
        fake_omni._patch(seeded, body_of(request))
        answer = {**seeded, USER_ATTRIBUTES_URN: dict(seeded[USER_ATTRIBUTES_URN])}
        del answer[USER_ATTRIBUTES_URN]["teams"]
        return httpx.Response(200, json=answer)

    fake_omni.before.append(drop_teams)
    client, rec = make_client(fake_omni)
    with pytest.raises(OmniWriteSemanticsError) as info:
        client.update_user(seeded["id"], attributes={"region": "eu-west"})
    assert isinstance(info.value, OmniUnexpectedStateError)
    assert (info.value.user, info.value.field, info.value.old, info.value.new) == (
        "dana@example.com",
        "teams",
        ["a", "b"],
        None,
    )
    assert "did not send vanished" in str(info.value) and "What to check" in str(info.value)
    assert rec.count("PATCH") == 1  # reported, not retried


def test_patch_answer_with_other_value_is_reported(make_client, fake_omni, seeded) -> None:
    def ignore_write(request: httpx.Request) -> httpx.Response | None:
        return httpx.Response(200, json=seeded) if request.method == "PATCH" else None

    fake_omni.before.append(ignore_write)
    client, _ = make_client(fake_omni)
    with pytest.raises(OmniWriteSemanticsError, match="did not store the value sent") as info:
        client.update_user(seeded["id"], attributes={"region": "eu-west"})
    assert (info.value.field, info.value.old, info.value.new) == ("region", "us-east", "us-east")


def _another_writer(fake_omni: FakeOmni, user: dict, name: str, value: object) -> None:
    """Before the PATCH lands, another tool sets ``name`` on the user (between our read and our write)."""

    def hook(request: httpx.Request) -> httpx.Response | None:
        if request.method == "PATCH":
            user[USER_ATTRIBUTES_URN][name] = value
        return None

    fake_omni.before.append(hook)


def test_another_writer_changing_an_unsent_attribute_is_not_a_failure(make_client, fake_omni, seeded) -> None:
    """Issue 8 item 6: judged on what was sent. Old code raised OmniUnexpectedStateError here."""
    _another_writer(fake_omni, seeded, "cost_center", "cc-2")
    client, rec = make_client(fake_omni)
    listed = client.list_users()[0]
    result = client.update_user(listed, attributes={"region": "eu-west"})
    assert result.action == "updated"
    assert [(c.attribute, c.before, c.after) for c in result.concurrent_changes] == [
        ("cost_center", "cc-1", "cc-2")
    ]
    assert rec.count("PATCH") == 1


@pytest.mark.parametrize("how", ["vanished", "reset", "display-name"])
def test_damage_to_what_was_not_sent_is_still_an_error(make_client, fake_omni, seeded, how) -> None:
    defs = {"cost_center": AttributeDefinition(name="cost_center", default_value="cc-0")}

    def damage(request: httpx.Request) -> httpx.Response | None:
        if request.method != "PATCH":
            return None
        fake_omni._patch(seeded, body_of(request))
        if how == "vanished":
            del seeded[USER_ATTRIBUTES_URN]["cost_center"]
        elif how == "reset":
            seeded[USER_ATTRIBUTES_URN]["cost_center"] = "cc-0"
        else:
            seeded["displayName"] = seeded["userName"]
        return httpx.Response(200, json=seeded)

    fake_omni.before.append(damage)
    client, _ = make_client(fake_omni)
    with pytest.raises(OmniWriteSemanticsError) as info:
        client.update_user(seeded["id"], attributes={"region": "eu-west"}, definitions=defs)
    field = "displayName" if how == "display-name" else "cost_center"
    assert info.value.field == field
    assert info.value.old == ("Dana" if how == "display-name" else "cc-1")


def test_answer_without_map_is_judged_on_a_fresh_read(make_client, fake_omni, seeded) -> None:
    def bare_and_lossy(request: httpx.Request) -> httpx.Response | None:
        if request.method != "PATCH":
            return None
        fake_omni._patch(seeded, body_of(request))
        del seeded[USER_ATTRIBUTES_URN]["teams"]  # the damage the answer does not show
        return httpx.Response(200, json={k: v for k, v in seeded.items() if k != USER_ATTRIBUTES_URN})

    fake_omni.before.append(bare_and_lossy)
    client, rec = make_client(fake_omni)
    with pytest.raises(OmniWriteSemanticsError, match="teams"):
        client.update_user(seeded["id"], attributes={"region": "eu-west"})
    assert rec.methods() == ["GET", "PATCH", "GET"]


def test_patch_answer_without_attribute_map_is_accepted(make_client, fake_omni, seeded) -> None:
    def bare_answer(request: httpx.Request) -> httpx.Response | None:
        if request.method != "PATCH":
            return None
        fake_omni._patch(seeded, body_of(request))
        return httpx.Response(200, json={k: v for k, v in seeded.items() if k != USER_ATTRIBUTES_URN})

    fake_omni.before.append(bare_answer)
    client, _ = make_client(fake_omni)
    result = client.update_user(seeded["id"], active=False)
    assert result.action == "updated"
    assert result.user.active is False


def test_update_of_missing_user_raises_not_found(make_client, fake_omni) -> None:
    client, rec = make_client(fake_omni)
    with pytest.raises(OmniNotFoundError):
        client.update_user("0b6d5e34-8a3e-4c53-9a4f-3d1c2b7a9e10", attributes={"a": "b"})
    assert rec.methods() == ["GET"]


def test_replace_user_sends_body_as_given(make_client, fake_omni, seeded) -> None:
    client, rec = make_client(fake_omni)
    body = {"userName": "dana@example.com", USER_ATTRIBUTES_URN: {"region": "eu-west"}}
    user = client.replace_user(seeded["id"], body)
    assert rec.methods() == ["PUT"]
    assert rec.bodies("PUT") == [body]
    # The fake (like Omni's current docs) replaces: what was not sent is gone.
    assert user.attributes == {"region": "eu-west"}
    assert user.display_name == "dana@example.com"
