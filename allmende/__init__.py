"""Allmende: the commons for open AI."""

__version__ = "0.1.0"
__all__ = ["__version__"]
