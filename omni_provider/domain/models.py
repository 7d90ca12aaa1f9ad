"""Pydantic models of Omni's SCIM payloads.

Hand-written rather than taken from scim2-models: Omni's attribute map is an open set of snake_case keys
whose ``null`` means "unset", which typed SCIM models camel-case, reject or drop. Here the map is a plain
dict and unknown fields are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CORE_USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
USER_ATTRIBUTES_URN = "urn:omni:params:1.0:UserAttribute"
OMNI_USER_EXTENSION_URN = "urn:omni:params:scim:schemas:extension:user:2.0"
LIST_RESPONSE_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

AttributeScalar = str | int | float
#: What Omni accepts as one user-attribute value; ``None`` unsets the attribute.
AttributeValue = AttributeScalar | list[AttributeScalar] | None


def is_unset(value: object) -> bool:
    """Omni treats ``None``, ``""`` and ``[]`` as "no value"; a missing key reads as ``None``."""
    if value is None:
        return True
    if isinstance(value, str | list | tuple):
        return len(value) == 0
    return False


class _ScimModel(BaseModel):
    # Omni adds fields over time; a client that refuses unknown fields breaks on the next release.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class OmniUser(_ScimModel):
    """A user as Omni returns it (GET, POST, PUT, PATCH)."""

    id: str
    user_name: str = Field(alias="userName")
    display_name: str | None = Field(default=None, alias="displayName")
    active: bool = True
    emails: list[dict[str, Any]] | None = None
    groups: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None
    schemas: list[str] = Field(default_factory=list)
    #: Attribute reference name -> value. Absent in some responses (Omni's PATCH example), so optional.
    attributes: dict[str, Any] = Field(default_factory=dict, alias="urn:omni:params:1.0:UserAttribute")
    #: Whether the response carried the attribute map at all (a missing map is not an empty one).
    attributes_present: bool = Field(default=False, exclude=True)

    def model_post_init(self, __context: Any) -> None:
        self.attributes_present = USER_ATTRIBUTES_URN in self.model_fields_set or "attributes" in (
            self.model_fields_set
        )

    def to_scim(self) -> dict[str, Any]:
        """SCIM JSON: empty top-level fields left out, ``null`` attribute values kept (they unset)."""
        body = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        body[USER_ATTRIBUTES_URN] = dict(self.attributes)
        return body


class UserListPage(_ScimModel):
    """One page of a SCIM ListResponse."""

    resources: list[OmniUser] = Field(default_factory=list, alias="Resources")
    total_results: int = Field(alias="totalResults")
    start_index: int = Field(default=1, alias="startIndex")
    items_per_page: int | None = Field(default=None, alias="itemsPerPage")
    schemas: list[str] = Field(default_factory=lambda: [LIST_RESPONSE_SCHEMA])


class AttributeDefinition(_ScimModel):
    """A user-attribute definition from ``GET /api/v1/user-attributes``."""

    name: str
    label: str | None = None
    id: str | None = None
    type: str = "String"
    multiple_values: bool = False
    default_value: Any = None
    description: str | None = None
    system: bool = False

    @property
    def is_number(self) -> bool:
        return self.type.lower() == "number"


class PatchOperation(_ScimModel):
    op: Literal["add", "replace", "remove"]
    path: str | None = None
    # Omni's published OpenAPI requires ``value`` on every op, remove included, so ``remove`` carries
    # ``"value": null``. RFC 7644 gives a value on a single-attribute remove no meaning, so a server that
    # follows the RFC ignores it (OmniKit, Omni's admin tool, leaves it out, which shows Omni does not need
    # it); one that validated against its own published schema would refuse a remove without it. If Omni
    # read it any other way, the unset would not take and the check after the write stops the run.
    value: Any = None

    def to_scim(self) -> dict[str, Any]:
        body: dict[str, Any] = {"op": self.op}
        if self.path is not None:
            body["path"] = self.path
        body["value"] = self.value
        return body


class PatchRequest(_ScimModel):
    schemas: list[str] = Field(default_factory=lambda: [PATCH_OP_SCHEMA])
    operations: list[PatchOperation] = Field(alias="Operations", min_length=1)

    def to_scim(self) -> dict[str, Any]:
        return {"schemas": list(self.schemas), "Operations": [op.to_scim() for op in self.operations]}


#: How ``update_user`` writes attribute changes (connection extra ``patch_form``).
PatchForm = Literal["attribute_path", "map_replace"]
PATCH_FORMS: tuple[PatchForm, ...] = ("attribute_path", "map_replace")
#: Per-attribute path ops by default. Omni documents neither form; the evidence for this one: it is what
#: Microsoft Entra's Omni provisioning (attribute targets ``urn:omni:params:1.0:UserAttribute:<name>``) and
#: OmniKit, Omni's admin tool, send, and RFC 7644 gives a path op one meaning (that attribute only). Above
#: all, a server that does not support it refuses the write (400) and nothing is damaged, whereas a server
#: that reads the no-path map replace as "replace the whole map" silently drops every attribute not sent.
DEFAULT_PATCH_FORM: PatchForm = "attribute_path"


def attribute_path(name: str) -> str:
    """The RFC 7644 URN path of one attribute: ``urn:omni:params:1.0:UserAttribute:<name>``."""
    return f"{USER_ATTRIBUTES_URN}:{name}"


def attributes_patch(
    attributes: Mapping[str, AttributeValue] | None = None,
    *,
    display_name: str | None = None,
    active: bool | None = None,
    form: PatchForm = DEFAULT_PATCH_FORM,
) -> PatchRequest:
    """A PatchOp that changes exactly the given fields, in one of two forms.

    ``attribute_path``: one op per change. ``replace`` with the path ``...UserAttribute:<name>`` sets a
    value; ``remove`` with that path unsets it (also for ``""`` and ``[]``, Omni's other "no value"
    spellings). ``displayName`` and ``active`` use their own paths, as in Omni's deactivation example.

    ``map_replace``: one no-path ``replace`` whose value nests the changed keys under the URN (``null``
    unsets), the form Omni's CLI sends; it relies on Omni merging that map key by key (RFC 7644 section
    3.5.2.3), which Omni does not document.
    """
    if form == "map_replace":
        value: dict[str, Any] = {}
        if display_name is not None:
            value["displayName"] = display_name
        if active is not None:
            value["active"] = active
        if attributes:
            value[USER_ATTRIBUTES_URN] = dict(attributes)
        return PatchRequest(Operations=[PatchOperation(op="replace", value=value)])
    if form != "attribute_path":
        raise ValueError(f"unknown PATCH form {form!r}; expected one of {PATCH_FORMS}")
    operations: list[PatchOperation] = []
    if display_name is not None:
        operations.append(PatchOperation(op="replace", path="displayName", value=display_name))
    if active is not None:
        operations.append(PatchOperation(op="replace", path="active", value=active))
    for name, new in (attributes or {}).items():
        if is_unset(new):
            operations.append(PatchOperation(op="remove", path=attribute_path(name)))
        else:
            operations.append(PatchOperation(op="replace", path=attribute_path(name), value=new))
    return PatchRequest(Operations=operations)
