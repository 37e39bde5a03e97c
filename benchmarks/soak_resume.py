"""Kill-and-resume soak: `kill -9` real `prunekit train` processes at random points, resume them, and compare the
final weights bitwise with an uninterrupted run of the same preset (issue 18).

    OMP_NUM_THREADS=1 python benchmarks/soak_resume.py --kills 20 --work /tmp/soak \
        --json benchmarks/results/soak_resume.json

For each preset (the dense, REPrune and CHEX quickstarts on digits, 1 thread) one uninterrupted reference run is
made and timed. Each trial then starts the same preset in a fresh run directory and kills it with SIGKILL:

  * "random" trials once the process has used a uniform random share in [5%, 95%] of the reference run's CPU
    time (start-up included; CPU time, not wall time, so the kill points do not depend on the machine's load);
  * "checkpoint" trials as soon as the k-th checkpoint directory appears (k random), i.e. while that checkpoint
    is being written, polling every 2 ms.

The killed run is then resumed with `prunekit train --resume RUN`; when there is no checkpoint to resume from,
the original command is run again into the same directory (what a user would do next). Outcomes: `identical`
(every tensor of model/model.safetensors bitwise equal, same pruned.json, same test accuracy), `different`,
`resume failed` (a checkpoint existed but the resume failed), `dead end` (no checkpoint, and the directory is
refused by both --resume and a new run), or `not interrupted` (the run finished before the kill; not counted).
The figure is identical / counted trials. All runs use a copy of src/prunekit taken at start (the commit and the
number of uncommitted files in it are recorded), so edits to the working tree during the soak do not mix in.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PRESETS = {"dense": "configs/quickstart.yaml", "reprune": "configs/quickstart-reprune.yaml",
           "chex": "configs/quickstart-chex.yaml"}


SNAPSHOT: list[Path] = []  # src/ copied once at start: every run of the soak uses the same code


def snapshot_source(work: Path) -> dict[str, Any]:
    """Copy src/prunekit into `work` (the working tree may change while the soak runs) and say which code it is."""
    target = work / "snapshot"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(REPO / "src" / "prunekit", target / "prunekit", ignore=shutil.ignore_patterns("__pycache__"))
    SNAPSHOT.append(target)
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "src/prunekit"], capture_output=True, text=True).stdout
    return {"commit": head, "uncommitted_src_files": len(dirty.splitlines())}


def env() -> dict[str, str]:
    extra = {"PYTHONPATH": str(SNAPSHOT[0])} if SNAPSHOT else {}
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0", **extra}


def train_command(preset: str, out: Path, overrides: list[str]) -> list[str]:
    command = [sys.executable, "-m", "prunekit", "train", str(REPO / preset), "--out", str(out), "--quiet"]
    for override in ["train.threads=1", *overrides]:
        command += ["--set", override]
    return command


def resume_command(out: Path) -> list[str]:
    return [sys.executable, "-m", "prunekit", "train", "--resume", str(out), "--quiet"]


def reference(preset: str, out: Path, overrides: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of an uninterrupted run into `out`."""
    start, log = time.perf_counter(), out.with_suffix(".stderr")
    with open(log, "w") as stderr:
        proc = subprocess.Popen(train_command(preset, out, overrides), stdout=subprocess.DEVNULL, stderr=stderr,
                                env=env())
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"reference run {preset} failed: {log.read_text().strip()}")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (Linux /proc), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def checkpoint_dirs(run: Path) -> set[str]:
    try:
        return {p.name for p in (run / "checkpoints").iterdir() if p.is_dir()}
    except OSError:
        return set()


def kill_run(command: list[str], run: Path, mode: str, when: float, k: int) -> dict[str, Any]:
    """Start `command`, SIGKILL it ("random": once it has used `when` CPU seconds; "checkpoint": when the k-th
    checkpoint directory appears); returns what happened."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(),
                            start_new_session=True)
    start, seen, note = time.perf_counter(), set(), ""
    while proc.poll() is None:
        if mode == "random" and cpu_seconds(proc.pid) >= when:
            break
        if mode == "checkpoint":
            seen |= checkpoint_dirs(run)
            if len(seen) >= k:
                note = f"checkpoint directory #{k} appeared"
                break
        time.sleep(0.002 if mode == "checkpoint" else 0.01)
    if proc.poll() is not None:
        return {"killed": False, "at_s": time.perf_counter() - start, "returncode": proc.returncode}
    cpu = cpu_seconds(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    latest = run / "checkpoints" / "latest.json"
    epoch = json.loads(latest.read_text()).get("epoch") if latest.is_file() else None
    return {"killed": True, "at_s": round(time.perf_counter() - start, 3), "cpu_s_at_kill": round(cpu, 2), "note": note,
            "checkpoint_epoch_at_kill": epoch, "temp_files_left": len(list(run.rglob("*.tmp")))}


def compare(reference_dir: Path, run: Path) -> tuple[str, str]:
    """('identical' | 'different', detail) for the final models of two run directories."""
    import torch
    from safetensors.torch import load_file

    ref = load_file(str(reference_dir / "model" / "model.safetensors"))
    got = load_file(str(run / "model" / "model.safetensors"))
    if ref.keys() != got.keys():
        return "different", f"tensor names differ ({len(ref)} vs {len(got)})"
    unequal = [name for name in ref if ref[name].shape != got[name].shape or not torch.equal(ref[name], got[name])]
    if unequal:
        return "different", f"{len(unequal)} tensors differ, first {unequal[0]}"
    if json.loads((reference_dir / "model" / "pruned.json").read_text()) != json.loads(
            (run / "model" / "pruned.json").read_text()):
        return "different", "pruned.json differs"
    accuracy = [json.loads((d / "summary.json").read_text())["test_accuracy"] for d in (reference_dir, run)]
    if accuracy[0] != accuracy[1]:
        return "different", f"test accuracy {accuracy[1]} vs {accuracy[0]}"
    return "identical", ""


def trial(index: int, method: str, mode: str, rng: random.Random, refs: dict[str, tuple[Path, float]],
          work: Path, overrides: list[str], epochs: int) -> dict[str, Any]:
    ref_dir, cpu = refs[method]
    run = work / f"trial-{index:03d}-{method}-{mode}"
    shutil.rmtree(run, ignore_errors=True)
    when, k = rng.uniform(0.05, 0.95) * cpu, rng.randint(1, max(1, epochs - 1))
    record: dict[str, Any] = {"trial": index, "method": method, "mode": mode}
    record.update(kill_run(train_command(PRESETS[method], run, overrides), run, mode, when, k))
    if not record["killed"]:
        record["outcome"] = "not interrupted"
        return record
    proc = subprocess.run(resume_command(run), capture_output=True, text=True, env=env())
    if proc.returncode != 0 and not (run / "checkpoints" / "latest.json").is_file():
        # nothing to resume from: what a user does next is run the same command again
        lines = proc.stderr.strip().splitlines()
        record["resume_refused"] = lines[-1] if lines else f"exit {proc.returncode}"
        proc = subprocess.run(train_command(PRESETS[method], run, overrides), capture_output=True, text=True,
                              env=env())
        record["restarted"] = True
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        outcome = "dead end" if record.get("restarted") else "resume failed"
        record.update(outcome=outcome, detail=lines[-1] if lines else f"exit {proc.returncode}",
                      one_line=len(lines) == 1)
        return record
    record["outcome"], record["detail"] = compare(ref_dir, run)
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="number of kill-and-resume trials")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times and checkpoint choices")
    parser.add_argument("--work", type=Path, default=Path("/tmp/prunekit-soak"), help="scratch directory")
    parser.add_argument("--json", type=Path, help="write every trial's record here")
    parser.add_argument("--methods", default="dense,reprune,chex", help="comma-separated subset of the presets")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override for every run (e.g. train.epochs=10); default: the presets as they are")
    args = parser.parse_args()
    methods = args.methods.split(",")
    args.work.mkdir(parents=True, exist_ok=True)
    code = snapshot_source(args.work)
    refs = {}
    for method in methods:
        out = args.work / f"reference-{method}"
        shutil.rmtree(out, ignore_errors=True)
        wall, cpu = reference(PRESETS[method], out, args.set)
        refs[method] = (out, cpu)
        print(f"reference {method}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    epochs = json.loads((args.work / f"reference-{methods[0]}" / "summary.json").read_text())["epochs"]
    rng = random.Random(args.seed)
    records = []
    for index in range(args.kills):
        method, mode = methods[index % len(methods)], ("random", "checkpoint")[(index // len(methods)) % 2]
        record = trial(index, method, mode, rng, refs, args.work, args.set, epochs)
        records.append(record)
        print(json.dumps(record, sort_keys=True), flush=True)
    counted = [r for r in records if r["outcome"] != "not interrupted"]
    identical = sum(r["outcome"] == "identical" for r in counted)
    outcomes = sorted({r["outcome"] for r in records})
    summary = {"identical": identical, "counted": len(counted), "trials": len(records),
               "by_outcome": {o: sum(r["outcome"] == o for r in records) for o in outcomes},
               "reference_cpu_s": {m: round(refs[m][1], 1) for m in methods}, "seed": args.seed,
               "overrides": args.set, "date": time.strftime("%Y-%m-%d"), "host_cpus": os.cpu_count(), **code}
    print(json.dumps(summary, sort_keys=True))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "trials": records}, indent=2, sort_keys=True) + "\n")
    return 0 if identical == len(counted) else 1


if __name__ == "__main__":
    sys.exit(main())
