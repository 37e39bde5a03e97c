"""bench.json: per-run figures read back from the run directories, their mean and spread over seeds, and which
differences are larger than that spread.

Ratios are paired by seed: a run's training FLOPs / time are divided by the reference run's with the same seed,
so the reference row is exactly 1 and the spread of a ratio is the spread of the paired ratios. "Spread" is the
sample standard deviation over seeds (n - 1 in the denominator); with 3 seeds it is itself uncertain, so
"exceeds the spread" is a screen (|difference| > sd_a + sd_b), not a significance test.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from prunekit import io

METRICS: dict[str, str] = {
    "test_accuracy": "test accuracy (0..1) at the end of training",
    "macs": "MACs per sample of one forward pass of the final network",
    "macs_reduction": "1 - MACs / dense MACs (the run's own supernet)",
    "params_reduction": "1 - params / dense params",
    "weight_density": "nonzero fraction of the masked weights at the end (weight-sparse methods only)",
    "itop_rate": "R_s: fraction of the maskable weights ever active (the last DST update's itop_rate)",
    "train_flops_ratio": "training FLOPs / the reference run's with the same seed (weight-sparse methods: the "
                         "sparse network's FLOPs by RigL's cost model, summary.json's sparse_train_flops)",
    "train_time_ratio": "measured training time (sum of training-loop time per epoch) / the reference run's",
    "final_epoch_s": "median seconds per epoch over the epochs that trained the final network (within 2% of its MACs)",
    "final_epoch_ratio": "final_epoch_s / the reference run's median over the same epochs",
}
PAIRED = ("train_flops_ratio", "train_time_ratio", "final_epoch_ratio")  # ratios to the same-seed reference
FINAL_TOLERANCE = 1.02  # an epoch trained "the final network" when its MACs are within 2% of the final MACs


def epoch_records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    return [r for r in io.read_jsonl(path) if r.get("kind") == "epoch"] if path.is_file() else []


def final_network_epochs(epochs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    final = epochs[-1]["macs"]
    return [r for r in epochs if r["macs"] <= FINAL_TOLERANCE * final]


def last_itop_rate(records: list[dict[str, Any]]) -> float | None:
    """R_s of the last DST update record (None when the run made none)."""
    rates = [r["itop_rate"] for r in records if r.get("kind") == "update" and "itop_rate" in r]
    return rates[-1] if rates else None


def run_metrics(run_dir: Path, reference: Path | None) -> dict[str, Any] | None:
    """The METRICS of one finished run (None when it has no summary.json yet)."""
    if not (run_dir / "summary.json").is_file():
        return None
    s = io.read_json(run_dir / "summary.json")
    path = run_dir / "metrics.jsonl"
    records = io.read_jsonl(path) if path.is_file() else []
    epochs = [r for r in records if r.get("kind") == "epoch"]
    out: dict[str, Any] = {
        "test_accuracy": s["test_accuracy"], "macs": s["macs"], "params": s["params"],
        "macs_reduction": 1.0 - s["macs"] / s["dense_macs"], "params_reduction": 1.0 - s["params"] / s["dense_params"],
        "train_flops": s.get("sparse_train_flops", s["train_flops"]), "train_time_s": s["train_time_s"],
    }
    if "weight_density" in s:
        out["weight_density"] = s["weight_density"]
        out["itop_rate"] = last_itop_rate(records)
    final = final_network_epochs(epochs) if epochs else []
    if final:
        out["final_epoch_s"] = statistics.median(r["epoch_time_s"] for r in final)
        out["final_epochs"] = [final[0]["epoch"], final[-1]["epoch"]]
    ref = io.read_json(reference / "summary.json") if reference and (reference / "summary.json").is_file() else None
    if ref is not None:
        out["train_flops_ratio"] = out["train_flops"] / ref.get("sparse_train_flops", ref["train_flops"])
        out["train_time_ratio"] = s["train_time_s"] / ref["train_time_s"]
        ref_times = {r["epoch"]: r["epoch_time_s"] for r in epoch_records(reference)}
        same = [ref_times[r["epoch"]] for r in final if r["epoch"] in ref_times]
        if same and "final_epoch_s" in out:
            out["final_epoch_ratio"] = out["final_epoch_s"] / statistics.median(same)
    return out


def spread(values: list[float]) -> dict[str, Any]:
    """mean, sample sd (None for one value), min, max and n."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"n": 0, "mean": None, "sd": None, "min": None, "max": None}
    sd = statistics.stdev(values) if len(values) > 1 else None
    return {"n": len(values), "mean": statistics.fmean(values), "sd": sd, "min": min(values), "max": max(values)}


def compare(a: dict[str, Any], b: dict[str, Any] | None, *, paired: bool) -> dict[str, Any]:
    """Difference of means and whether it exceeds the spread: |d| > sd_a + sd_b; a paired ratio against 1."""
    if a["mean"] is None or a["n"] < 2 or (not paired and (b is None or b["mean"] is None or b["n"] < 2)):
        return {"difference": None, "spread": None, "exceeds": None}
    difference = a["mean"] - (1.0 if paired else b["mean"])  # type: ignore[index]
    width = a["sd"] + (0.0 if paired else b["sd"])  # type: ignore[index]
    return {"difference": difference, "spread": width, "exceeds": abs(difference) > width}


def method_rows(specs: list[Any], reference: str) -> list[dict[str, Any]]:
    refs = {spec.seed: spec.run_dir for spec in specs if spec.label == reference}
    rows: dict[str, dict[str, Any]] = {}
    for spec in specs:
        row = rows.setdefault(spec.label, {
            "label": spec.label, "method": spec.config.method.name, "params": spec.method_params,
            "budget_keys": spec.budget_keys, "runs": []})
        ref = refs.get(spec.seed)
        row["runs"].append({"seed": spec.seed, "run_dir": str(spec.run_dir),
                            "metrics": run_metrics(spec.run_dir, ref)})
    for row in rows.values():
        done = [r["metrics"] for r in row["runs"] if r["metrics"] is not None]
        row["stats"] = {key: spread([m.get(key) for m in done]) for key in METRICS}
    return list(rows.values())


def comparisons(rows: list[dict[str, Any]], reference: str) -> list[dict[str, Any]]:
    """Accuracy of every pair of rows; paired ratios of every row against the reference."""
    out = []
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            out.append({"metric": "test_accuracy", "a": a["label"], "b": b["label"],
                        **compare(a["stats"]["test_accuracy"], b["stats"]["test_accuracy"], paired=False)})
        if a["label"] != reference:
            for key in PAIRED:
                out.append({"metric": key, "a": a["label"], "b": reference,
                            **compare(a["stats"][key], None, paired=True)})
    return out


def build_bench(suite: Any, specs: list[Any], out: Path) -> dict[str, Any]:
    """The bench.json object (paths relative to `out` where they lie inside it)."""
    rows = method_rows(specs, suite.reference)
    for row in rows:
        for run in row["runs"]:
            path = Path(run["run_dir"])
            run["run_dir"] = str(path.relative_to(out)) if path.is_relative_to(out) else str(path)
    missing = [f"{row['label']}/seed-{r['seed']}" for row in rows for r in row["runs"] if r["metrics"] is None]
    return {
        "suite": suite.name, "description": suite.description, "reference": suite.reference,
        "seeds": list(suite.seeds), "budget": dict(suite.budget), "metrics": METRICS,
        "spread_rule": "sample sd over seeds; a difference exceeds the spread when |d| > sd_a + sd_b "
                       "(paired ratios: |ratio - 1| > sd)",
        "methods": rows, "comparisons": comparisons(rows, suite.reference), "missing": missing,
    }
