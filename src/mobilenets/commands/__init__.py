"""Subcommands of the ``mobilenets`` command line, one module per workflow step."""

from __future__ import annotations

import argparse


def resolution_arg(text: str) -> tuple[int, int]:
    """``--resolution`` for every command: 224 or HxW such as 224x160 (the one parser, complexity's)."""
    from ..complexity import parse_resolution

    try:
        h, w = parse_resolution(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if min(h, w) < 1:
        raise argparse.ArgumentTypeError(f"resolution must be positive, got {text!r}")
    return h, w


def square_resolution_arg(text: str) -> int:
    """``--resolution`` where only square inputs are supported (training data)."""
    h, w = resolution_arg(text)
    if h != w:
        raise argparse.ArgumentTypeError(f"training takes a square --resolution (e.g. {h}), got {text!r}")
    return h
