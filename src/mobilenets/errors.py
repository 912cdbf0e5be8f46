"""The exception for a user's mistake (a bad option, file or model name); anything else is our bug."""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user: the CLI prints its message as one line and exits 2.

    A ValueError, so code that validates input with plain ValueErrors and callers that catch
    ValueError keep working.
    """


def unpickling_detail(err: BaseException) -> str:
    """What a ``torch.load(weights_only=True)`` refusal found, without torch's advice to load the file unsafely.

    torch's message suggests rerunning with ``weights_only=False`` (which runs whatever code the file
    holds) or allow-listing the class; a file from elsewhere must do neither, so only the name of the
    object it refused is kept.
    """
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    found = re.search(r"Unsupported global: GLOBAL ([\w.<>]+)", text)
    if found:
        return f"it refers to {found.group(1)}, which is not a tensor or a plain value"
    found = re.search(r"WeightsUnpickler error: ([^\n.]+)", text)
    if found:
        return found.group(1).strip()
    return "it holds a pickled object that is not a tensor or a plain value"
