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
from prunekit.errors import UserError


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
              extra_set: list[str] | None = None, seeds: list[int] | None = None,
              methods: list[str] | None = None, say: Callable[[str], None] = print) -> BenchResult:
    """Run (or only aggregate, `train=False`) a suite; bench.json and bench.md are written either way.

    `seeds` and `methods` (labels) train only those runs, in the order given (a long suite split over sessions
    or machines); the table aggregates every run of the suite finished so far either way."""
    suite, root = load_suite(path)
    out = out or default_out(suite)
    specs = resolve_runs(suite, root, out, extra_set=extra_set)
    outcomes: list[Outcome] = []
    if train:
        chosen = select_runs(specs, seeds=seeds, labels=methods)
        say(f"bench {suite.name}: {len(chosen)} runs ({len({s.label for s in chosen})} methods x "
            f"{len({s.seed for s in chosen})} seeds) into {out}, {jobs} at a time")
        outcomes = run_jobs([Job(s.key, s.run_dir, s.config) for s in chosen], parallel=jobs,
                            log_dir=out / "logs", say=say)
    bench, table = write_bench(suite, specs, out)
    return BenchResult(bench, table, out, outcomes)


def select_runs(specs: list[RunSpec], *, seeds: list[int] | None = None,
                labels: list[str] | None = None) -> list[RunSpec]:
    """The runs of `specs` with one of `seeds` and `labels` (None: all), ordered as `labels` then `seeds` list
    them; a seed or label the suite does not have is a UserError."""
    for wanted, have, what in ((seeds, [s.seed for s in specs], "seed"), (labels, [s.label for s in specs], "method")):
        unknown = [w for w in (wanted or []) if w not in have]
        if unknown:
            known = ", ".join(str(h) for h in dict.fromkeys(have))
            raise UserError(f"{what} {unknown[0]!r} is not in the suite (it has {known})")
    label_rank = {label: i for i, label in enumerate(labels)} if labels else None
    seed_rank = {seed: i for i, seed in enumerate(seeds)} if seeds else None
    chosen = [s for s in specs if (label_rank is None or s.label in label_rank)
              and (seed_rank is None or s.seed in seed_rank)]
    if label_rank is not None:
        chosen.sort(key=lambda s: label_rank[s.label])  # stable: the suite's seed order within a label
    return chosen


__all__ = ["BenchResult", "load_suite", "resolve_runs", "run_bench", "select_runs", "write_bench"]
