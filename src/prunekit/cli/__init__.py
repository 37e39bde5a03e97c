"""Command-line entry points: `prunekit <command>`, one module per command in this package.

Each command module defines `register(subparsers)`, which adds its subparser and sets `func`; adding a command
means adding a module, nothing else. A user mistake (`UserError`) prints one line on stderr and exits with
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence

from prunekit.errors import UserError


def command_modules() -> list[str]:
    """Names of the command modules of this package, in alphabetical order (helpers start with `_` or are
    `common`)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and m.name != "common")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prunekit", description="Prune neural networks while they train.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in command_modules():
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as exc:
        print(f"prunekit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunekit: interrupted; resume with `prunekit train --resume RUN_DIR`", file=sys.stderr)
        return 130
