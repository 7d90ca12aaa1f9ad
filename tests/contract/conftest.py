"""Fixtures for the contract tests: Omni's published OpenAPI schemas, and the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).with_name("omni-openapi-scim.json")
SPEC_URI = "urn:omni:openapi-scim"
# Same values as tests/conftest.py.
TEST_API_KEY = "omni-test-key-7f3a9c1e5b"


@pytest.fixture(scope="session")
def openapi() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def schema_validator(openapi: dict[str, Any]):
    """``schema_validator("ScimUserPatchRequest")``: a validator that resolves ``$ref``s in the document and
    checks ``format`` (email, uuid)."""
    registry = Registry().with_resource(
        SPEC_URI, Resource.from_contents(openapi, default_specification=DRAFT202012)
    )

    def make(name: str) -> Draft202012Validator:
        assert name in openapi["components"]["schemas"], name
        return Draft202012Validator(
            {"$ref": f"{SPEC_URI}#/components/schemas/{name}"},
            registry=registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    return make


@pytest.fixture(scope="session")
def emulator_server() -> Iterable[Any]:
    emulator = pytest.importorskip("omni_provider.emulator")
    config = emulator.EmulatorConfig(api_keys=[TEST_API_KEY], rate_limit_enabled=False)
    with emulator.EmulatorServer(config, host="127.0.0.1") as server:
        yield server


@pytest.fixture
def emulator(emulator_server: Any) -> Any:
    emulator_server.config.apply_patch({"put_mode": "replace", "faults": {}, "rate_limit_enabled": False})
    emulator_server.reset()
    return emulator_server
