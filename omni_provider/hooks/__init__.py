"""Airflow hooks of omni-provider."""

from omni_provider.hooks.omni import OmniScimHook

__all__ = ["OmniScimHook"]
