"""Run a sweep: each grid point is RUN=OUT/<point> run by a `prunekit` subprocess (so a crash, a Ray
simulation or a kill stays inside one run), `--jobs` at a time. Resumable: a point whose RUN/summary.json
exists is skipped; an ordinary run with a checkpoint is continued with `prunekit train --resume`; any other
unfinished point (a federated run: no per-round checkpoints) is started again from scratch."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunekit import io
from prunekit.config import read_yaml
from prunekit.errors import UserError
from prunekit.sweep.grid import Axis, Point, points


@dataclass
class Outcome:
    point: Point
    run_dir: Path
    status: str  # done | skipped | failed | pending (not run: tables only)
    summary: dict[str, Any]


def is_federated(config: Path) -> bool:
    return "federated" in read_yaml(config)


def command(config: Path, point: Point, run_dir: Path) -> list[str]:
    base = [sys.executable, "-m", "prunekit"]
    sets = [arg for o in point.overrides for arg in ("--set", o)]
    if is_federated(config):
        return [*base, "federate", str(config), *sets, "--out", str(run_dir), "--restart", "--quiet"]
    if (run_dir / "checkpoints").is_dir() and (run_dir / "config.yaml").is_file():
        return [*base, "train", "--resume", str(run_dir), "--quiet"]
    if run_dir.exists():  # a run killed before its first checkpoint
        import shutil

        shutil.rmtree(run_dir)
    return [*base, "train", str(config), *sets, "--out", str(run_dir), "--quiet"]


def run_point(config: Path, point: Point, out: Path, run: bool = True) -> Outcome:
    run_dir = out / point.dirname
    if (run_dir / "summary.json").is_file():
        return Outcome(point, run_dir, "skipped", io.read_json(run_dir / "summary.json"))
    if not run:
        return Outcome(point, run_dir, "pending", {})
    log = out / "logs" / f"{point.dirname}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as handle:
        code = subprocess.run(command(config, point, run_dir), stdout=handle, stderr=subprocess.STDOUT,
                              env=env, check=False).returncode
    if code == 0 and (run_dir / "summary.json").is_file():
        return Outcome(point, run_dir, "done", io.read_json(run_dir / "summary.json"))
    return Outcome(point, run_dir, "failed", {})


def run_sweep(config: str | os.PathLike[str], axes: list[Axis], out: str | os.PathLike[str], jobs: int = 1,
              progress: Any = print, run: bool = True) -> list[Outcome]:
    """Run (or with run=False only collect) every grid point; outcomes in grid order."""
    config, out = Path(config), Path(out)
    if not config.is_file():
        raise UserError(f"config file not found: {config}")
    grid = points(axes)
    out.mkdir(parents=True, exist_ok=True)
    io.write_json(out / "sweep.json", {"config": str(config), "grid": [[list(a.keys), [list(v) for v in a.values]]
                                                                      for a in axes]})
    outcomes: list[Outcome] = []

    def one(point: Point) -> Outcome:
        outcome = run_point(config, point, out, run)
        progress(f"{outcome.status:8s} {point.dirname}  "
                 f"{outcome.summary.get('test_accuracy', float('nan')):.4f}")
        return outcome

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        outcomes = list(pool.map(one, grid))
    return outcomes
