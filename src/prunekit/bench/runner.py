"""Run many configs, each as its own resumable run directory: finished runs are skipped, interrupted ones resumed,
`jobs > 1` runs that many at once as subprocesses with one thread each. Used by `prunekit bench`; any driver
that runs a list of configs (a sweep) can use `run_jobs` as it is.

A run directory's state is read from disk only: `summary.json` means finished, `checkpoints/latest.json` means
resumable, a run directory with neither (killed before its first checkpoint) is started again. A run directory
made with different settings is never reused silently (`check_same_config`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunekit import io
from prunekit.config import RunConfig, read_yaml
from prunekit.errors import UserError

# Settings that change how a run executes, not what it computes: ignored when comparing a run directory's config.
EXECUTION_KEYS = {("train", "threads"), ("train", "progress")}
# What a run directory killed before its first checkpoint can contain; anything else is not ours to delete.
EARLY_FILES = {"config.yaml", "metrics.jsonl", "tensorboard"}


@dataclass
class Job:
    """One training run: `key` names it in progress lines and logs."""

    key: str
    run_dir: Path
    config: RunConfig


@dataclass
class Outcome:
    key: str
    status: str  # "skipped" | "trained" | "failed"
    seconds: float = 0.0
    summary: dict[str, Any] | None = None
    error: str = ""


def run_state(run_dir: Path) -> str:
    """"done", "resume", "new" (nothing there) or "restart" (killed before its first checkpoint)."""
    if (run_dir / "summary.json").is_file():
        return "done"
    if (run_dir / "checkpoints" / "latest.json").is_file():
        return "resume"
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "new"
    extra = sorted(p.name for p in run_dir.iterdir() if p.name not in EARLY_FILES)
    if extra:
        raise UserError(f"{run_dir} exists and holds {extra[0]!r}, which is not part of an unfinished run; "
                        f"move it away or choose another output directory")
    return "restart"


def _strip(cfg: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(cfg))
    for section, key in EXECUTION_KEYS:
        out.get(section, {}).pop(key, None)
    return out


def check_same_config(run_dir: Path, cfg: RunConfig) -> None:
    """A run directory holds the same settings as `cfg` (execution-only keys aside), or a UserError says which."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    old, new = _strip(read_yaml(path)), _strip(cfg.to_dict())
    if old != new:
        key = _first_difference(old, new)
        raise UserError(f"{run_dir} was run with other settings ({key} differs); delete it or use another --out")


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    return prefix.rstrip(".") or "<top>"


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class Progress:
    """One line per finished run, with an estimate of the time left from the runs trained so far."""

    total: int
    jobs: int
    say: Callable[[str], None] = print
    done: int = 0
    durations: list[float] = field(default_factory=list)
    start: float = field(default_factory=time.perf_counter)

    def eta(self) -> str:
        left = self.total - self.done
        if not left:
            return "all done"
        if not self.durations:
            return f"{left} left"
        mean = sum(self.durations) / len(self.durations)
        return f"about {format_duration(mean * left / self.jobs)} left"

    def report(self, outcome: Outcome) -> None:
        self.done += 1
        if outcome.status == "trained":
            self.durations.append(outcome.seconds)
        what = {"skipped": "finished earlier, skipped", "failed": f"FAILED ({outcome.error})",
                "trained": f"trained in {format_duration(outcome.seconds)}"}[outcome.status]
        result = ""
        if outcome.summary:
            s = outcome.summary
            result = f"; test {100 * s['test_accuracy']:.2f}%, {s['macs'] / max(1, s['dense_macs']):.2f}x MACs"
        elapsed = format_duration(time.perf_counter() - self.start)
        self.say(f"[{self.done}/{self.total}] {outcome.key}: {what}{result} (elapsed {elapsed}, {self.eta()})")


def prepare(job: Job) -> str:
    """Check the run directory and clear a run killed before its first checkpoint; returns its state."""
    state = run_state(job.run_dir)
    check_same_config(job.run_dir, job.config)
    if state == "restart":
        shutil.rmtree(job.run_dir)
    return state


def _train_here(job: Job, state: str) -> dict[str, Any]:
    from prunekit.train.trainer import Trainer

    trainer = Trainer.resume(job.run_dir) if state == "resume" else Trainer(job.config, job.run_dir)
    return trainer.fit()


def run_jobs(jobs: list[Job], *, parallel: int = 1, log_dir: Path | None = None,
             say: Callable[[str], None] = print) -> list[Outcome]:
    """Run every job not finished yet. `parallel == 1` trains in this process with each config's own threads;
    `parallel > 1` starts that many subprocesses at once, each with `train.threads=1` and its output in
    `log_dir/<key>.log`. A failed run is reported and the others go on."""
    progress = Progress(total=len(jobs), jobs=parallel, say=say)
    states = {job.key: prepare(job) for job in jobs}  # every directory is checked before anything runs
    outcomes: list[Outcome] = []
    pending = []
    for job in jobs:
        if states[job.key] == "done":
            outcomes.append(Outcome(job.key, "skipped", summary=io.read_json(job.run_dir / "summary.json")))
            progress.report(outcomes[-1])
        else:
            pending.append(job)
    if parallel == 1:
        for job in pending:
            start = time.perf_counter()
            try:
                summary = _train_here(job, states[job.key])
                outcomes.append(Outcome(job.key, "trained", time.perf_counter() - start, summary))
            except UserError as exc:
                outcomes.append(Outcome(job.key, "failed", time.perf_counter() - start, error=str(exc)))
            progress.report(outcomes[-1])
    else:
        outcomes += _run_parallel(pending, states, parallel, log_dir or Path("."), progress)
    return outcomes


def _start(job: Job, state: str, log_dir: Path) -> tuple[subprocess.Popen[bytes], Any]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / (job.key.replace("/", "_") + ".log"), "ab")  # noqa: SIM115 (closed when the run ends)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    config = job.config.to_dict()
    config["train"]["threads"] = 1
    proc = subprocess.Popen([sys.executable, "-m", "prunekit.bench.worker", str(job.run_dir),
                             "resume" if state == "resume" else "new"],
                            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(config).encode())
    proc.stdin.close()
    return proc, log


def _run_parallel(pending: list[Job], states: dict[str, str], parallel: int, log_dir: Path,
                  progress: Progress) -> list[Outcome]:
    outcomes: list[Outcome] = []
    queue = list(pending)
    running: dict[str, tuple[Job, subprocess.Popen[bytes], Any, float]] = {}
    try:
        while queue or running:
            while queue and len(running) < parallel:
                job = queue.pop(0)
                proc, log = _start(job, states[job.key], log_dir)
                running[job.key] = (job, proc, log, time.perf_counter())
            time.sleep(0.2)
            for key, (job, proc, log, start) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[key]
                seconds = time.perf_counter() - start
                if proc.returncode == 0 and (job.run_dir / "summary.json").is_file():
                    outcomes.append(Outcome(key, "trained", seconds, io.read_json(job.run_dir / "summary.json")))
                else:
                    log_name = log_dir / (key.replace("/", "_") + ".log")
                    outcomes.append(Outcome(key, "failed", seconds,
                                            error=f"exit status {proc.returncode}, see {log_name}"))
                progress.report(outcomes[-1])
    finally:
        for _job, proc, log, _start_time in running.values():  # interrupted: stop only the runs started here
            proc.terminate()
            proc.wait()
            log.close()
    return outcomes
