"""Turning rendered template values into typed operator inputs.

A template field can arrive as a native object (XComArg, ``render_template_as_native_obj``, DAG params), as a
JSON string (``| tojson``), or as a Python repr string (plain Jinja renders ``{{ ti.xcom_pull() }}`` of a
dict as ``"{'region': 'EU'}"``). We deliberately accept all three, parsing the last with
``ast.literal_eval``, which evaluates literals only, never code.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from typing import Any

from omni_provider.domain.identity import validate_email, validate_user_id
from omni_provider.errors import OmniValidationError

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off", ""}


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == "None"


def parse_structure(value: str, *, what: str) -> Any:
    """A JSON (or Python-literal) string rendered by a template, parsed."""
    try:
        return json.loads(value)
    except RecursionError:
        raise OmniValidationError(f"{what} is nested too deeply to parse") from None
    except json.JSONDecodeError as json_error:
        try:
            return ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            preview = value if len(value) <= 80 else value[:77] + "..."
            raise OmniValidationError(
                f"{what} is not valid JSON ({json_error.msg} at line {json_error.lineno} column "
                f"{json_error.colno}): {preview!r}"
            ) from None
    except ValueError as exc:  # valid syntax Python cannot hold, e.g. an integer of more than 4300 digits
        raise OmniValidationError(f"{what} cannot be parsed: {str(exc)[:80]}") from None


def parse_attribute_mapping(value: object) -> Any:
    """The sync's ``attributes`` (column -> attribute, or a list of names) as given, or parsed from the JSON
    text a template renders; the spec checks the shape."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        raise OmniValidationError(
            "attributes given as a string must be a JSON object or list of column names"
        ) from None


def parse_attributes(value: object) -> dict[str, object]:
    """The ``attributes`` field: a mapping, or a string holding one. ``None``/empty means no attributes."""
    if _blank(value):
        return {}
    if isinstance(value, str):
        value = parse_structure(value, what="attributes")
    if not isinstance(value, Mapping):
        raise OmniValidationError(
            f"attributes must be an object of attribute name -> value, got {type(value).__name__}"
        )
    out: dict[str, object] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise OmniValidationError(f"attribute names must be strings, got {key!r}")
        out[key] = item
    return out


def parse_user_id(value: object) -> str | None:
    if _blank(value):
        return None
    return validate_user_id(value)


def parse_user_name(value: object) -> str | None:
    if _blank(value):
        return None
    return validate_email(value)


def parse_optional_text(value: object, *, what: str) -> str | None:
    if _blank(value):
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise OmniValidationError(f"{what} must be text, got {type(value).__name__}")
    text = str(value).strip()
    if len(text) > 256:
        raise OmniValidationError(f"{what} is longer than 256 characters")
    return text


def parse_bool(value: object, *, what: str) -> bool:
    """Booleans from params or templates (``"True"``, ``"false"``, ``1``...)."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise OmniValidationError(f"{what} must be true or false, got {value!r}")


def parse_optional_bool(value: object, *, what: str) -> bool | None:
    if _blank(value):
        return None
    return parse_bool(value, what=what)
