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
COMMAND_MODULES = ["models", "convert", "train", "deploy"]


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
    except (ValueError, KeyError, TypeError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"mobilenets {args.command}: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
