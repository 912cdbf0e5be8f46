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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"mobilenets.commands.{name}").add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
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
