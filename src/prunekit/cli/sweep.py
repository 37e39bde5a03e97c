"""`prunekit sweep CONFIG --grid KEY=V1,V2 [--grid ...] [--jobs N]`: one resumable run per combination."""

from __future__ import annotations

import argparse
from pathlib import Path

from prunekit.cli.common import positive_int


def run(args: argparse.Namespace) -> int:
    from prunekit.sweep.grid import parse_axis
    from prunekit.sweep.runner import run_sweep
    from prunekit.sweep.table import markdown, write_outputs

    axes = [parse_axis(text) for text in args.grid]
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{Path(args.config).stem}"
    outcomes = run_sweep(args.config, axes, out, jobs=args.jobs, run=not args.tables_only)
    write_outputs(outcomes, out, args.metric)
    print(markdown(outcomes, args.metric))
    print(f"wrote {out / 'sweep.csv'}, {out / 'sweep.md'}, {out / 'sweep.png'}")
    failed = [o for o in outcomes if o.status == "failed"]
    for o in failed:
        print(f"failed: {o.point.dirname} (log: {out / 'logs' / (o.point.dirname + '.log')})")
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run every combination of a grid of config values (resumable)")
    p.add_argument("config", help="any preset (prunekit train or, with a federated: section, prunekit federate)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a swept key and its values; K1+K2=a+b,c+d sets keys together (repeatable; the last "
                        "--grid gives the table's columns)")
    p.add_argument("--jobs", type=positive_int, default=1, help="runs at a time")
    p.add_argument("--out", help="sweep directory (default runs/sweep-<config name>)")
    p.add_argument("--metric", default="test_accuracy", help="summary.json key shown in the table and plot")
    p.add_argument("--tables-only", action="store_true",
                   help="run nothing: write the tables from the runs finished so far (others show 'pending')")
    p.set_defaults(func=run)
