"""`prunekit train CONFIG` and `prunekit train --resume RUN_DIR`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prunekit.errors import UserError


def run(args: argparse.Namespace) -> int:
    from prunekit.config import load_config
    from prunekit.train.trainer import Trainer, run_dir_name

    if args.resume:
        if args.config or args.set:
            raise UserError("--resume takes the run directory only; its config.yaml is used as saved")
        trainer = Trainer.resume(args.resume, quiet=args.quiet)
    else:
        if not args.config:
            raise UserError("prunekit train needs a CONFIG file (or --resume RUN_DIR)")
        cfg = load_config(args.config, args.set)
        out = Path(args.out) if args.out else Path("runs") / run_dir_name(cfg)
        trainer = Trainer(cfg, out, quiet=args.quiet)
    summary = trainer.fit()
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
    train.set_defaults(func=run)
