"""`prunekit inspect --model NAME`: channel groups and what each policy may prune."""

from __future__ import annotations

import argparse
import json

from prunekit.cli.common import build_model, model_args


def run(args: argparse.Namespace) -> int:
    from prunekit.channels import inspect_rows

    model, shape, torch = build_model(args.model, args.input, args.num_classes)
    rows = inspect_rows(model, torch.randn(1, *shape))
    groups = [r for r in rows if r["kind"] == "group"]
    unsupported = [r for r in rows if r["kind"] == "unsupported"]
    if args.policy:
        groups = [r for r in groups if r[f"prunable_{args.policy}"]]
    if args.json:
        print(json.dumps({"groups": groups, "unsupported": unsupported}, sort_keys=True))
        return 0
    header = f"{'group':<24} {'size':>5} {'prod':>4} {'cons':>4} {'bn':<22} {'MACs%':>6}  prunable under"
    print(header)
    print("-" * len(header))
    for row in groups:
        policies = "/".join(p for p in ("internal", "all") if row[f"prunable_{p}"]) or f"- ({row['reason']})"
        print(f"{row['name']:<24} {row['size']:>5} {len(row['producers']):>4} {len(row['consumers']):>4} "
              f"{str(row['bn'] or '-'):<22} {100 * row['macs_share']:>6.1f}  {policies}")
    for row in unsupported:
        print(f"unsupported: {row['name']} ({row['type']}): {row['reason']}")
    print("MACs% = dense MACs of the group's producers and consumers over all conv/linear MACs (an upper bound "
          "on what pruning the group saves)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    inspect = sub.add_parser("inspect", help="channel groups of a model and what each policy may prune")
    model_args(inspect)
    inspect.add_argument("--policy", choices=["internal", "all"], help="list only the groups this policy prunes")
    inspect.set_defaults(func=run)
