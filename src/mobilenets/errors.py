"""The exception for a user's mistake (a bad option, file or model name); anything else is our bug."""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user: the CLI prints its message as one line and exits 2.

    A ValueError, so code that validates input with plain ValueErrors and callers that catch
    ValueError keep working.
    """
