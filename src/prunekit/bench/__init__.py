"""`prunekit bench SUITE.yaml`: every (method, seed) of a suite as a resumable run directory, then bench.json and a
markdown table with the mean and spread over seeds. `run_bench` is the whole command as a function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunekit import io
from prunekit.bench.aggregate import build_bench
from prunekit.bench.runner import Job, Outcome, run_jobs
from prunekit.bench.suite import RunSpec, Suite, load_suite, resolve_runs
from prunekit.bench.table import markdown_table


def default_out(suite: Suite) -> Path:
    return Path(suite.out) if suite.out else Path("runs") / "bench" / suite.name


@dataclass
class BenchResult:
    bench: dict[str, Any]  # the bench.json object
    table: str  # the markdown of bench.md
    out: Path
    outcomes: list[Outcome]  # one per run this call looked at (empty with train=False)


def write_bench(suite: Suite, specs: list[RunSpec], out: Path) -> tuple[dict[str, Any], str]:
    """Write OUT/bench.json and OUT/bench.md from whatever runs have finished."""
    bench = build_bench(suite, specs, out)
    table = markdown_table(bench)
    io.write_json(out / "bench.json", bench)
    io.write_text(out / "bench.md", f"# Bench `{suite.name}`\n\n{table}")
    return bench, table


def run_bench(path: str | Path, *, out: Path | None = None, jobs: int = 1, train: bool = True,
              extra_set: list[str] | None = None, say: Callable[[str], None] = print
              ) -> BenchResult:
    """Run (or only aggregate, `train=False`) a suite; bench.json and bench.md are written either way."""
    suite, root = load_suite(path)
    out = out or default_out(suite)
    specs = resolve_runs(suite, root, out, extra_set=extra_set)
    outcomes: list[Outcome] = []
    if train:
        say(f"bench {suite.name}: {len(specs)} runs ({len({s.label for s in specs})} methods x "
            f"{len(suite.seeds)} seeds) into {out}, {jobs} at a time")
        outcomes = run_jobs([Job(s.key, s.run_dir, s.config) for s in specs], parallel=jobs,
                            log_dir=out / "logs", say=say)
    bench, table = write_bench(suite, specs, out)
    return BenchResult(bench, table, out, outcomes)


__all__ = ["BenchResult", "load_suite", "resolve_runs", "run_bench", "write_bench"]
