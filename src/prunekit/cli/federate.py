"""`prunekit federate CONFIG`: federated (dynamic) sparse training on Flower's simulation engine."""

from __future__ import annotations

import argparse
import json


def run(args: argparse.Namespace) -> int:
    from prunekit.federated.runner import federate, prepare

    if args.prepare_only:
        run_dir, clients, _ = prepare(args.config, args.set, args.out, restart=args.restart)
        print(json.dumps({"run_dir": str(run_dir), "clients": clients}))
        return 0
    summary = federate(args.config, args.set, args.out, quiet=args.quiet, restart=args.restart)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("federate", help="federated sparse training (FedDST) on Flower's simulation engine")
    p.add_argument("config", help="YAML preset with a federated: section, e.g. configs/federated/quickstart.yaml")
    p.add_argument("--out", help="run directory (default runs/<name>-<config hash>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value, e.g. --set federated.beta=0.1 (repeatable)")
    p.add_argument("--restart", action="store_true", help="clear an existing run directory and run again")
    p.add_argument("--prepare-only", action="store_true",
                   help="validate and write RUN/config.yaml only (for Flower's deployment runtime: run-dir=RUN)")
    p.add_argument("--quiet", action="store_true", help="less Flower / Ray output")
    p.set_defaults(func=run)
