"""Airflow operators of omni-provider (import the modules directly; this package stays light)."""
