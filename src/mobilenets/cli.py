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
COMMAND_MODULES = ["models", "convert", "train", "deploy", "data", "adapt"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobilenets",
        description="MobileNetV1/V2/V3 and ShuffleNet V1: build, count, train, export.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars (also: COMMAND --quiet)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"mobilenets.commands.{name}").add_commands(sub)
    for command in sub.choices.values():
        # Also after the command name; SUPPRESS keeps a `mobilenets --quiet CMD` from being reset to False.
        command.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                             help="no progress bars (they are off anyway when stderr is not a terminal)")  # fmt: skip
    return parser


def _version() -> str:
    # The running package's version (pyproject's, kept equal by a test): an installed copy's metadata
    # may belong to another checkout than the one on the path.
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    from .progress import set_quiet

    set_quiet(args.quiet)
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
