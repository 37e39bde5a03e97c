"""`prunekit train CONFIG` and `prunekit train --resume RUN_DIR`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from prunekit.cli.common import positive_int
from prunekit.errors import UserError
from prunekit.rundir import check_output_dir


def launch_processes(nproc: int, argv: list[str]) -> int:
    """`prunekit train --nproc N ...`: the same command under torchrun with N processes on this machine."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "prunekit", "train", *argv]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    code = subprocess.call(command, env=env)
    if code != 0:
        raise UserError(f"a training process failed (exit status {code}); an interrupted run resumes with "
                        f"`prunekit train --resume RUN_DIR --nproc {nproc}` (any number of processes)")
    return 0


def run(args: argparse.Namespace) -> int:
    from prunekit.config import load_config
    from prunekit.train.trainer import Trainer, run_dir_name

    if args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return launch_processes(args.nproc, _same_arguments(args))
    if args.resume:
        if args.config:
            raise UserError("--resume takes the run directory only; its config.yaml is used as saved")
        trainer = Trainer.resume(args.resume, overrides=args.set, quiet=args.quiet)
    else:
        if not args.config:
            raise UserError("prunekit train needs a CONFIG file (or --resume RUN_DIR)")
        cfg = load_config(args.config, args.set)
        out = Path(args.out) if args.out else Path("runs") / run_dir_name(cfg)
        check_output_dir(out, "--out" if args.out else "the run directory")
        trainer = Trainer(cfg, out, quiet=args.quiet)
    summary = trainer.fit()
    if trainer.is_main:
        print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a preset into a run directory")
    train.add_argument("config", nargs="?", help="YAML preset, e.g. configs/quickstart.yaml")
    train.add_argument("--out", help="run directory (default runs/<name>-<config hash>)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.add_argument("--nproc", type=positive_int, default=1,
                       help="train with N processes (DistributedDataParallel via torchrun; gloo on CPU)")
    train.set_defaults(func=run)


def _same_arguments(args: argparse.Namespace) -> list[str]:
    """The arguments of this `prunekit train` call, without --nproc."""
    out = [args.config] if args.config else []
    for flag, value in (("--out", args.out), ("--resume", args.resume)):
        if value:
            out += [flag, value]
    for item in args.set:
        out += ["--set", item]
    return out + (["--quiet"] if args.quiet else [])
