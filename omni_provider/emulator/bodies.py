"""Reading request bodies with bounds, for every route (API and admin).

A body larger than ``MAX_BODY_BYTES`` is a 413 before it is read whole; JSON nested deeper than
``MAX_JSON_DEPTH`` is a 400 (without a cap, ``json.loads`` of ``[[[[...`` raises ``RecursionError``,
which the server would answer with a 500). Omni documents neither limit; real SCIM bodies are a few
kilobytes and at most three levels deep.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from .errors import ApiError

MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32


def too_large() -> ApiError:
    return ApiError(413, f"Request body larger than {MAX_BODY_BYTES} bytes")


async def read_body(request: Request) -> bytes:
    """The raw body, refused (413) as soon as it passes ``MAX_BODY_BYTES``."""
    announced = request.headers.get("content-length", "")
    if announced.strip().isdigit() and int(announced) > MAX_BODY_BYTES:
        raise too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large()
    return bytes(body)


def _depth(value: Any) -> int:
    """How deeply ``value`` nests arrays and objects (a scalar is 0), without recursing."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if level > MAX_JSON_DEPTH:
            break
        pending.extend((child, level + 1) for child in children)
    return deepest


def parse_json(raw: bytes, error: Callable[[str], ApiError]) -> Any:
    """``raw`` as JSON, or ``error(detail)`` (a 400) when it is not JSON or nests too deeply."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise error(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:
        raise error("malformed JSON") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise error(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


async def read_json(request: Request, error: Callable[[str], ApiError]) -> Any:
    return parse_json(await read_body(request), error)
