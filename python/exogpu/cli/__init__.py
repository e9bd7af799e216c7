"""The `exogpu` command line: one subcommand module per area.

Each module in COMMAND_MODULES exposes `register(subparsers)`, which adds its
subcommands and sets `func` on each parser to a callable taking the parsed
arguments and returning the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from exogpu._core import Error

COMMAND_MODULES = (
    "exogpu.cli.devices",
    "exogpu.cli.monitor",
    "exogpu.cli.place",
    "exogpu.cli.probe",
    "exogpu.cli.security",
    "exogpu.cli.bench",
    "exogpu.cli.profile",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exogpu", description="The GPU layer for clusters of mixed accelerators."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except Error as err:
        # A typed error already says what was wrong: no traceback.
        print(f"exogpu {args.command}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
