"""The package version, in one place: hatch reads it for the build, the package re-exports it."""

__version__ = "0.2.0"
