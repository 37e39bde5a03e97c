"""Tiny run directories written by hand (no training): config.yaml, metrics.jsonl and summary.json with the
fields the Trainer writes, for the bench aggregation and report tests. Importable as `fake_runs`."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prunekit import io

DENSE_MACS, DENSE_PARAMS = 1_000_000, 50_000
GROUPS = {"layer1.conv1": 16, "layer2.conv1": 32}


def epoch_record(epoch: int, *, macs: int, acc: float, seconds: float, samples: int = 100) -> dict[str, Any]:
    return {"kind": "epoch", "epoch": epoch, "step": 4 * (epoch + 1), "lr": 0.1 * (1 - epoch / 10),
            "train_loss": 2.0 / (epoch + 1), "train_accuracy": acc - 0.02, "test_loss": 2.2 / (epoch + 1),
            "test_accuracy": acc, "epoch_time_s": seconds, "data_time_s": seconds / 50, "macs": macs,
            "params": int(DENSE_PARAMS * macs / DENSE_MACS), "train_flops": 6 * macs * samples}


def make_run(path: Path, *, method: str = "dense", seed: int = 0, epochs: int = 4, accuracy: float = 0.9,
             cut_at: int | None = None, keep: float = 0.5, seconds: float = 1.0,
             extra: list[dict[str, Any]] | None = None) -> Path:
    """A finished run; `cut_at` = the epoch after which a one-shot decision keeps `keep` of every group."""
    records, macs = [], DENSE_MACS
    for epoch in range(epochs):
        acc = accuracy - 0.3 / (epoch + 1)
        records.append(epoch_record(epoch, macs=macs, acc=acc, seconds=seconds * macs / DENSE_MACS))
        if epoch == cut_at:
            kept = {g: int(w * keep) for g, w in GROUPS.items()}
            records.append({"kind": "decision", "epoch": epoch, "step": 4 * (epoch + 1), "at": "epoch",
                            "method": method, "kept": kept, "removed": {g: w - kept[g] for g, w in GROUPS.items()},
                            "macs_before": macs, "macs_after": int(macs * keep), "params_before": DENSE_PARAMS,
                            "params_after": int(DENSE_PARAMS * keep)})
            macs = int(macs * keep)
    records += extra or []
    path.mkdir(parents=True, exist_ok=True)
    io.write_yaml(path / "config.yaml", {"name": path.name, "method": {"name": method, "params": {}},
                                         "train": {"seed": seed, "epochs": epochs, "threads": 1}})
    for record in records:
        io.append_jsonl(path / "metrics.jsonl", record)
    epoch_rows = [r for r in records if r["kind"] == "epoch"]
    io.write_json(path / "summary.json", {
        "method": method, "model": "fake", "dataset": "synthetic", "epochs": epochs,
        "test_accuracy": epoch_rows[-1]["test_accuracy"], "test_loss": epoch_rows[-1]["test_loss"],
        "params": epoch_rows[-1]["params"], "macs": macs, "flops": 2 * macs, "dense_params": DENSE_PARAMS,
        "dense_macs": DENSE_MACS, "train_time_s": sum(r["epoch_time_s"] for r in epoch_rows),
        "train_flops": sum(r["train_flops"] for r in epoch_rows)})
    return path


def spec(label: str, seed: int, run_dir: Path, method: str | None = None, params: dict | None = None):
    """What bench.aggregate needs of a RunSpec."""
    config = SimpleNamespace(method=SimpleNamespace(name=method or label))
    return SimpleNamespace(label=label, seed=seed, run_dir=run_dir, config=config, method_params=params or {},
                           budget_keys=[])


def make_bench(out: Path, accuracies: dict[str, list[float]], *, cut_at: int = 1) -> dict[str, Any]:
    """A bench directory: one run per (label, seed) with the given final accuracies; 'dense' is the reference.
    Writes bench.json and returns it."""
    from prunekit.bench.aggregate import build_bench

    specs = []
    for label, values in accuracies.items():
        for seed, acc in enumerate(values):
            pruned = label != "dense"
            run_dir = make_run(out / label / f"seed-{seed}", method=label, seed=seed, accuracy=acc + 0.3 / 4,
                               cut_at=cut_at if pruned else None, seconds=1.0 + 0.01 * seed)
            specs.append(spec(label, seed, run_dir))
    suite = SimpleNamespace(name="fake-suite", description="hand-written runs", reference="dense",
                            seeds=list(range(max(len(v) for v in accuracies.values()))), budget={})
    bench = build_bench(suite, specs, out)
    io.write_json(out / "bench.json", bench)
    return bench
