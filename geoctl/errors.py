"""The one error type the commands turn into a one-line message and exit code 2."""

from __future__ import annotations


class GeoctlError(Exception):
    """A usage, connection or authorisation problem, said in one line for a person."""
