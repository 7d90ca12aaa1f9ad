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


def form_widgets() -> dict[str, Any]:
    """WTForms fields for Airflow 2's Flask connection form, one per ``conn-fields`` entry.

    Flask-AppBuilder and WTForms come with the Airflow 2 webserver; they are imported here, on use, since
    Airflow 3 does not install them and never calls this.
    """
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import IntegerField, PasswordField, StringField
    from wtforms.validators import NumberRange, Optional, Regexp

    widgets: dict[str, Any] = {}
    for name, field in CONNECTION_FIELDS.items():
        schema: Mapping[str, Any] = field["schema"]
        label = lazy_gettext(field["label"])
        description = field.get("description", "")
        types = _types(schema)
        validators: list[Any] = [Optional()]
        if "minimum" in schema or "maximum" in schema:
            validators.append(NumberRange(min=schema.get("minimum"), max=schema.get("maximum")))
        if schema.get("format") == "password":
            widgets[name] = PasswordField(label, description=description, widget=BS3PasswordFieldWidget())
        elif "integer" in types:
            widgets[name] = IntegerField(
                label, description=description, validators=validators, widget=BS3TextFieldWidget()
            )
        elif "number" in types:
            # Airflow 2's form takes only String/Integer/Password/Boolean fields; the hook range-checks.
            number = Regexp(r"^\s*\d+(\.\d+)?\s*$", message="must be a number")
            widgets[name] = StringField(
                label, description=description, validators=[Optional(), number], widget=BS3TextFieldWidget()
            )
        else:
            widgets[name] = StringField(label, description=description, widget=BS3TextFieldWidget())
    return widgets
