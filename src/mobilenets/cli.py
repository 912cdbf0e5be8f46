"""The ``mobilenets`` command line (also ``python -m mobilenets``).

Each module in ``mobilenets.commands`` adds its subcommands with ``add_commands``;
heavy imports happen inside the command functions, so ``mobilenets list`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# One line per command module; each defines add_commands(subparsers).
COMMAND_MODULES = ["models", "convert", "train", "deploy", "data"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobilenets",
        description="MobileNetV1/V2/V3 and ShuffleNet V1: build, count, train, export.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"mobilenets.commands.{name}").add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return args.func(args) or 0
    except BrokenPipeError:
        return 0
    except USER_ERRORS as err:
        # TypeError, KeyError, IndexError... are not caught: from our code they are bugs, and a
        # one-line "error" would hide them. Validation raises ValueError (or UsageError) instead.
        print(f"mobilenets {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


# A user's mistake: a bad value, or a path that is missing, taken, of the wrong kind or not permitted.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
               PermissionError)  # fmt: skip


def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line; an OSError without our own message names its path."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        path = err.filename2 if err.filename2 is not None else err.filename
        text = f"{path}: {err.strerror}"
        if isinstance(err, FileExistsError | IsADirectoryError | NotADirectoryError):
            text += "; choose another path"
    else:
        text = str(err)
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


if __name__ == "__main__":
    raise SystemExit(main())
