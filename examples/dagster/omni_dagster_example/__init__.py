"""Warehouse user attributes into Omni, as two Dagster assets."""
