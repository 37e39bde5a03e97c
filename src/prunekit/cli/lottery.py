"""`prunekit lottery CONFIG [--levels N] [--out RUN]`: iterative magnitude pruning, resumable by re-running."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from prunekit.lottery import LotteryDriver, load_lottery_config
    from prunekit.train.trainer import non_default_settings

    overrides = list(args.set)
    if args.levels is not None:
        overrides.append(f"lottery.levels={args.levels}")
    if args.mode is not None:
        overrides.append(f"lottery.mode={args.mode}")
    cfg, lottery = load_lottery_config(args.config, overrides)
    if args.out:
        out = Path(args.out)
    else:
        settings = {"run": non_default_settings(cfg), "lottery": lottery.to_dict()}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
        out = Path("runs") / f"lottery-{cfg.name}-{digest}"
    summary = LotteryDriver(cfg, lottery, out, quiet=args.quiet).run()
    print(json.dumps(summary, indent=2, sort_keys=True))
    print(f"lottery run: {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lottery", help="iterative magnitude pruning (lottery tickets); re-run the same command to "
                                       "resume")
    p.add_argument("config", help="YAML preset with a `lottery:` section, e.g. configs/lottery/quickstart.yaml")
    p.add_argument("--levels", type=int, help="pruning levels after the dense level 0 (lottery.levels)")
    p.add_argument("--mode", choices=["reset", "weight_rewind", "lr_rewind", "finetune"],
                   help="retraining mode (lottery.mode)")
    p.add_argument("--out", help="experiment directory (default runs/lottery-<name>-<settings hash>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set lottery.rate=0.3 or --set train.epochs=3")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)
