"""The connection extra ``patch_form``: how the client writes attribute changes."""

from __future__ import annotations

import pytest

from omni_provider.client import OmniConfigurationError
from omni_provider.hooks.omni import OmniScimHook


@pytest.mark.parametrize(
    ("extra", "form"),
    [
        (None, "attribute_path"),  # the default, chosen on the evidence (README, "How the update is made")
        ({"patch_form": "map_replace"}, "map_replace"),
        ({"patch_form": " attribute_path "}, "attribute_path"),
        ({"extra__omni__patch_form": "map_replace"}, "map_replace"),
        ({"patch_form": ""}, "attribute_path"),
    ],
)
def test_patch_form_extra(set_conn, extra, form: str) -> None:
    set_conn(extra=extra)
    hook = OmniScimHook()
    assert hook.get_conn().patch_form == form
    hook.close()


def test_unknown_patch_form_is_refused(set_conn) -> None:
    set_conn(extra={"patch_form": "json_patch"})
    expected = "extra 'patch_form' must be one of 'attribute_path', 'map_replace', got 'json_patch'"
    with pytest.raises(OmniConfigurationError, match=expected):
        OmniScimHook().get_conn()


def test_patch_form_in_a_uri_connection(set_conn) -> None:
    set_conn(uri="omni://:omni-test-key-7f3a9c1e5b@acme.omniapp.co?patch_form=map_replace")
    hook = OmniScimHook()
    assert hook.get_conn().patch_form == "map_replace"
    hook.close()
