"""The Airflow 2 connection form, derived from the one definition in ``get_provider_info``.

Airflow 3.2+ reads ``conn-fields`` / ``ui-field-behaviour`` from the provider info and never calls the
hook's classmethods. Airflow 2.11's Flask UI only calls ``OmniScimHook.get_connection_form_widgets()`` and
``get_ui_field_behaviour()``; both are built here from the same dictionaries, so the two forms cannot
drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omni_provider.get_provider_info import CONNECTION_FIELDS, CONNECTION_FORM


def ui_field_behaviour() -> dict[str, Any]:
    """``ui-field-behaviour`` in Airflow 2's snake_case shape."""
    return {
        "hidden_fields": list(CONNECTION_FORM["hidden-fields"]),
        "relabeling": dict(CONNECTION_FORM["relabeling"]),
        "placeholders": dict(CONNECTION_FORM["placeholders"]),
    }


def _types(schema: Mapping[str, Any]) -> set[str]:
    declared = schema.get("type", "string")
    return {declared} if isinstance(declared, str) else set(declared)


def _number_in_range(low: float | None, high: float | None) -> Any:
    """A WTForms validator for a number typed into a text field, in ``[low, high]`` (Airflow 2's form has
    no float field); the hook checks the same range (``ClientSettings``) when the connection is used."""
    from wtforms.validators import ValidationError

    bounds = " ".join(
        f"{word} {bound:,}" for word, bound in (("from", low), ("to", high)) if bound is not None
    )

    def check(form: Any, field: Any) -> None:
        text = str(field.data or "").strip()
        if not text:
            return
        try:
            value = float(text)
        except ValueError:
            raise ValidationError("must be a number") from None
        if value != value or (low is not None and value < low) or (high is not None and value > high):
            raise ValidationError(f"must be a number {bounds}")

    return check


def form_widgets() -> dict[str, Any]:
    """WTForms fields for Airflow 2's Flask connection form, one per ``conn-fields`` entry, with the same
    label, description, type and range.

    Flask-AppBuilder and WTForms come with the Airflow 2 webserver; they are imported here, on use, since
    Airflow 3 does not install them and never calls this.
    """
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import IntegerField, PasswordField, StringField
    from wtforms.validators import AnyOf, NumberRange, Optional

    widgets: dict[str, Any] = {}
    for name, field in CONNECTION_FIELDS.items():
        schema: Mapping[str, Any] = field["schema"]
        label = lazy_gettext(field["label"])
        description = field.get("description", "")
        types = _types(schema)
        low, high = schema.get("minimum"), schema.get("maximum")
        text = BS3TextFieldWidget()
        if schema.get("format") == "password":
            widgets[name] = PasswordField(label, description=description, widget=BS3PasswordFieldWidget())
        elif "integer" in types:
            in_range = NumberRange(min=low, max=high)
            widgets[name] = IntegerField(
                label, description=description, validators=[Optional(), in_range], widget=text
            )
        elif "number" in types:
            # Airflow 2's form takes only String/Integer/Password/Boolean fields; a float is typed as text.
            in_range = _number_in_range(low, high)
            widgets[name] = StringField(
                label, description=description, validators=[Optional(), in_range], widget=text
            )
        elif "enum" in schema:
            choices = [c for c in schema["enum"] if c is not None]
            one_of = AnyOf(choices, message="must be one of " + ", ".join(choices))
            widgets[name] = StringField(
                label, description=description, validators=[Optional(), one_of], widget=text
            )
        else:
            widgets[name] = StringField(label, description=description, widget=text)
    return widgets
