"""The package version (the bottom layer reads it here, not from the package face)."""

__version__ = "0.1.0"
