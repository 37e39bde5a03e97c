"""`prunekit lmc CONFIG --at STEP` (a dense run) or `prunekit lmc --lottery RUN --level L` (a lottery level's
sparse network): linear mode connectivity / instability of two copies trained from step k."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prunekit.errors import UserError


def run(args: argparse.Namespace) -> int:
    from prunekit.lottery import LotteryConfig, LotteryDriver, load_lottery_config
    from prunekit.lottery.lmc import run_lmc
    from prunekit.train.trainer import StartPoint, run_dir_name

    if args.lottery:
        if args.config or args.at is not None or args.set:
            raise UserError("--lottery takes a finished lottery run and --level only")
        driver = _driver_of(Path(args.lottery), quiet=args.quiet)
        level = int(args.level or 0)
        if not 0 <= level <= driver.lottery.levels:
            raise UserError(f"--level must lie in 0..{driver.lottery.levels}")
        if level == 0:
            start = StartPoint(weights=driver.rewind_weights(), step=driver.rewind_step)
        else:
            start = driver.level_start(level)  # a channel ticket arrives as its plan
        cfg = driver.level_cfg(level)
        out = Path(args.out) if args.out else Path(args.lottery) / f"lmc_level_{level:02d}"
    else:
        if not args.config or args.at is None:
            raise UserError("prunekit lmc needs CONFIG and --at STEP (or --lottery RUN --level L)")
        cfg, _ = load_lottery_config(args.config, list(args.set))
        root = Path(args.out) if args.out else Path("runs") / f"lmc-{run_dir_name(cfg)}-at-{args.at}"
        driver = LotteryDriver(cfg, LotteryConfig(levels=0, mode="weight_rewind", rewind_step=str(args.at)),
                               root / "trunk", quiet=args.quiet)
        if driver.rewind_step > 0:
            driver.run()  # the dense trunk, keeping its checkpoint at step k
        else:
            driver.root.mkdir(parents=True, exist_ok=True)
        start = StartPoint(weights=driver.rewind_weights(), step=driver.rewind_step)
        out = root
    result = run_lmc(cfg, start, out, driver.probe(), points=args.points, quiet=args.quiet,
                     train_eval_limit=args.train_batches)
    print(json.dumps({"start_step": result.start_step, "barrier": result.path["barrier"]}, sort_keys=True))
    print(f"lmc: {out / 'lmc.json'}, {out / 'lmc.png'}")
    return 0


def _driver_of(root: Path, quiet: bool):  # type: ignore[no-untyped-def]
    from prunekit import io
    from prunekit.config import RunConfig, build_dataclass
    from prunekit.lottery import LotteryConfig, LotteryDriver

    path = root / "settings.json"
    if not path.is_file():
        raise UserError(f"{root}: not a lottery run (settings.json missing)")
    settings = io.read_json(path)
    if not isinstance(settings, dict) or not isinstance(settings.get("run"), dict):
        raise UserError(f"{path}: malformed lottery settings")
    cfg = build_dataclass(RunConfig, settings["run"])
    lottery = build_dataclass(LotteryConfig, settings.get("lottery") or {}, prefix="lottery.")
    return LotteryDriver(cfg, lottery, root, quiet=quiet)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lmc", help="linear mode connectivity: two copies from step k, the error barrier between them")
    p.add_argument("config", nargs="?", help="YAML preset (a dense run is trained up to --at first)")
    p.add_argument("--at", help="step k: '500it', '2ep', a fraction like '0.02', or 0")
    p.add_argument("--lottery", metavar="RUN", help="a lottery run directory (instead of CONFIG)")
    p.add_argument("--level", type=int, help="the lottery level whose sparse network is checked (default 0)")
    p.add_argument("--points", type=int, default=30, help="evenly spaced points on the path (default 30)")
    p.add_argument("--train-batches", type=int, default=None,
                   help="evaluate the train error on the first N batches only (default: all)")
    p.add_argument("--out", help="output directory")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)
