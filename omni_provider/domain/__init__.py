"""The domain model, without I/O: Omni's users, groups and attribute definitions (pydantic), attribute values
(coercion and comparison), identities (emails, ids, group names: one rule) and what a write changes."""
