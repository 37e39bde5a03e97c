"""`prunekit bench SUITE.yaml [--out DIR] [--jobs N]`: every method x seed of a suite, then bench.json + bench.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from prunekit.cli.common import positive_int
from prunekit.errors import UserError


def run(args: argparse.Namespace) -> int:
    from prunekit.bench import run_bench

    result = run_bench(args.suite, out=Path(args.out) if args.out else None, jobs=args.jobs,
                       train=not args.no_train, extra_set=args.set, seeds=args.seeds,
                       methods=args.methods)
    failed = [o for o in result.outcomes if o.status == "failed"]
    print(f"\n{result.table}\nwrote {result.out / 'bench.json'} and {result.out / 'bench.md'}")
    if failed:
        raise UserError(f"{len(failed)} run(s) failed ({', '.join(o.key for o in failed)}); run the same command "
                        f"again to retry them (finished runs are skipped)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run every method x seed of a suite and tabulate mean and spread")
    p.add_argument("suite", help="suite YAML, e.g. benchmarks/suites/quickstart-structured.yaml")
    p.add_argument("--out", help="output directory (default: the suite's `out`, else runs/bench/<suite name>)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="runs at once; above 1 each run is a subprocess with one torch thread")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value in every run, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                   help="train only the runs of these seeds (default: all of the suite's); the table still covers "
                        "every finished run, so a long suite can be split over sessions")
    p.add_argument("--methods", nargs="+", metavar="LABEL",
                   help="train only these methods (labels as in bench.md), in this order (default: all)")
    p.add_argument("--no-train", action="store_true",
                   help="only write bench.json / bench.md from the runs finished so far")
    p.set_defaults(func=run)
