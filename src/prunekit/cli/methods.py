"""`prunekit methods` lists every pruning method with its paper and parameters; `prunekit methods NAME` shows one."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from prunekit.methods.catalog import method_info, render_catalog, render_method

    print(render_method(method_info(args.name), long=True) if args.name else render_catalog())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    methods = sub.add_parser("methods", help="list the pruning methods: summary, paper, parameters")
    methods.add_argument("name", nargs="?", help="show one method with its full description, e.g. reprune")
    methods.set_defaults(func=run)
