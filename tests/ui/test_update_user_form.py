"""The ``omni_update_user`` trigger form: the email field says what it expects and refuses what the
operator would refuse, before a run is created."""

from __future__ import annotations

import re
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import ParamValidationError

from omni_provider.domain.identity import validate_email

GOOD = ["ada@example.com", "Ada.Lovelace@Example.COM", "first+tag@sub.example.co.uk", " ada@example.com "]
BAD = ["not-an-email", "ada@", "@example.com", "ada@example", "ada lovelace@example.com", "a@b@c", ""]


@pytest.fixture(scope="module")
def email_param(airflow_db: Any) -> Any:
    bag = DagBag("dags")
    assert not bag.import_errors
    dag = bag.get_dag("omni_update_user")
    assert dag is not None
    return dag.params.get_param("email")


def test_description_tells_the_expected_form(email_param: Any) -> None:
    assert "e.g. ada@example.com" in email_param.description
    assert email_param.schema["format"] == "email" and email_param.schema["pattern"]


@pytest.mark.parametrize("value", GOOD)
def test_valid_emails_pass_the_form_and_the_operator(email_param: Any, value: str) -> None:
    assert email_param.resolve(value) == value
    validate_email(value)


@pytest.mark.parametrize("value", BAD)
def test_invalid_emails_are_refused_by_the_form(email_param: Any, value: str) -> None:
    with pytest.raises(ParamValidationError):
        email_param.resolve(value)


@pytest.mark.parametrize("value", [*GOOD, *BAD, "a@b.c", "x@-.-", "tab\t@example.com", "ada@exa mple.com"])
def test_the_pattern_is_not_looser_than_the_operator(email_param: Any, value: str) -> None:
    """What the form's pattern lets through, the operator accepts too (else the run would fail late)."""
    if re.search(email_param.schema["pattern"], value):
        validate_email(value)
