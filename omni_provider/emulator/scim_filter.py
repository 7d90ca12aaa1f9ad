"""The small subset of RFC 7644 filters Omni documents: ``<attr> eq|co "<string>"``."""

from __future__ import annotations

import dataclasses
import json
import re

from .errors import bad_request

# The value is a JSON string literal (RFC 7644 section 3.4.2.2), so \" and \\ are escapes.
_FILTER = re.compile(r'^\s*([A-Za-z][\w.:-]*)\s+([A-Za-z]{2})\s+("(?:[^"\\]|\\.)*")\s*$', re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Filter:
    attribute: str  # as declared in ``allowed`` (canonical case)
    op: str  # lower case
    value: str


def parse_filter(text: str, allowed: dict[str, frozenset[str]]) -> Filter:
    """Parse ``text``; ``allowed`` maps attribute name -> permitted operators.

    Attribute names and operators are case-insensitive. Anything else is 400 "Unsupported filter".
    """
    match = _FILTER.match(text)
    if match is None:
        raise bad_request("Unsupported filter")
    attr_raw, op_raw, literal = match.groups()
    canonical = {name.lower(): name for name in allowed}
    attribute = canonical.get(attr_raw.lower())
    op = op_raw.lower()
    if attribute is None or op not in allowed[attribute]:
        raise bad_request("Unsupported filter")
    try:
        value = json.loads(literal)
    except ValueError:
        raise bad_request("Unsupported filter") from None
    if not isinstance(value, str):
        raise bad_request("Unsupported filter")
    return Filter(attribute=attribute, op=op, value=value)
