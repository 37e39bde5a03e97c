"""Command-line entry points: `prunekit <command>`, one module per command in this package.

Each command module defines `register(subparsers)`, which adds its subparser and sets `func`; adding a command
means adding a module, nothing else. A user mistake (`UserError`) prints one line on stderr and exits with
status 2, never a traceback; so does a failure of the environment (an OSError: a full or read-only disk, a
path that is a file where a directory is needed; or a MemoryError).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import typing
from collections.abc import Callable, Sequence

from prunekit.errors import UserError


def command_modules() -> list[str]:
    """Names of the command modules of this package, in alphabetical order (helpers start with `_` or are
    `common`)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and m.name != "common")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (`prunekit COMMAND: error: ...`) and exit status 2,
    like every other user mistake; `--help` still prints the usage."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"prunekit: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="prunekit", description="Prune neural networks while they train.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in command_modules():
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def check_paths(args: argparse.Namespace) -> None:
    """Output paths of any command, checked before it starts: `--out` must be (or become) a directory."""
    from prunekit.rundir import check_output_dir

    if getattr(args, "out", None):
        check_output_dir(args.out, "--out")


def one_line(text: str) -> str:
    """`text` on one line whatever it quotes (a file name or --set key with a newline in it)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def environment_error(exc: OSError | MemoryError) -> str:
    """One line for a failure of the machine rather than of prunekit: a full or read-only disk, a path that is
    not what it should be, no memory."""
    if isinstance(exc, MemoryError):
        return "out of memory (a smaller train.batch_size, model or data.train_subset may fit)"
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or type(exc).__name__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        check_paths(args)
        return func(args)
    except UserError as exc:
        print(f"prunekit: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except (OSError, MemoryError) as exc:  # environment failures: one line, exit 2, like a user mistake
        if os.environ.get("PRUNEKIT_TRACEBACK"):  # for debugging prunekit itself
            raise
        print(f"prunekit: error: {one_line(environment_error(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunekit: interrupted; resume with `prunekit train --resume RUN_DIR`", file=sys.stderr)
        return 130
