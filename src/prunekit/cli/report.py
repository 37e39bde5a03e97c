"""`prunekit report RUN_OR_BENCH_DIR... [--out report.html]`: one self-contained HTML page, PNGs under plots/."""

from __future__ import annotations

import argparse

from prunekit.errors import UserError


def run(args: argparse.Namespace) -> int:
    try:
        from prunekit.report import write_report
    except ImportError as exc:
        raise UserError(str(exc)) from exc

    out = write_report(args.dirs, args.html, write_plots=not args.no_plots)
    print(out.resolve())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="an HTML report (and PNG plots) of run and bench directories")
    p.add_argument("dirs", nargs="+", metavar="RUN_OR_BENCH_DIR",
                   help="run directories, bench directories, or directories holding run directories")
    # dest "html", not "out": the CLI checks every `args.out` as a directory, and this --out is a file.
    p.add_argument("--out", dest="html", metavar="FILE", default="report.html",
                   help="the HTML file to write (default report.html)")
    p.add_argument("--no-plots", action="store_true", help="do not write PNG files under each run's plots/")
    p.set_defaults(func=run)
