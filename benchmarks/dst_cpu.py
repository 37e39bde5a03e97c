"""Dynamic sparse training on the CPU, scaled down. Rows: dense, static-ERK, SET-ERK, RigL-uniform, RigL-ERK,
ITOP (RigL growth, ERK) and channel-level DST (ERK), at 90% sparsity, one thread.

Tiers (--tier):
- digits (default): configs/quickstart.yaml (small CNN on 8x8 digits, 30 epochs, 690 steps), method aside.
- resnet20-subset: configs/cifar10-resnet20-dense.yaml on a stratified 5,000-image CIFAR-10 subset for 8 epochs
  (312 steps); about 2.3 min per epoch on one contended thread, so ~2.5 h for the seven rows.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/dst_cpu.py --out /tmp/dst-bench [--tier digits]

Schedules are scaled to the few hundred steps of these runs: dT = 10 (RigL's 100 would give a handful of
updates; its CIFAR-10 run makes 750), ITOP dT = 40 (4x RigL's, as 4000 : 1500-ish in the ITOP README is to RigL's
100 scaled down), T_end = 3/4 of training, channel removal every 3 epochs. Writes
OUT/results.json (one entry per row: accuracy, weight density, R_s, training FLOPs vs dense by RigL's cost model,
measured training time vs dense) and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from prunekit.config import load_config
from prunekit.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
TIERS = {
    "digits": ("quickstart.yaml", ["train.threads=1", "train.progress=never"]),
    "resnet20-subset": ("cifar10-resnet20-dense.yaml", ["data.train_subset=5000", "data.test_subset=2000",
                                                        "train.epochs=8", "train.threads=1", "train.progress=never"]),
}
DST = "update_every: 10, end_fraction: 0.75"
ROWS = {
    "dense": ["method.name=dense"],
    "static-erk": ["method.name=static", "method.params={sparsity: 0.9, distribution: erk}"],
    "set-erk": ["method.name=set", f"method.params={{sparsity: 0.9, distribution: erk, {DST}}}"],
    "rigl-uniform": ["method.name=rigl", f"method.params={{sparsity: 0.9, distribution: uniform, {DST}}}"],
    "rigl-erk": ["method.name=rigl", f"method.params={{sparsity: 0.9, distribution: erk, {DST}}}"],
    "itop-erk": ["method.name=itop", "method.params={sparsity: 0.9, distribution: erk, update_every: 40}"],
    "channel-dst-erk": ["method.name=channel_dst",
                        f"method.params={{sparsity: 0.9, distribution: erk, {DST}, channel_every: 3, "
                        "channel_rate: 0.15, channel_target: 0.5, channel_end_fraction: 0.75}"],
}


def run_row(name: str, out: Path, tier: str) -> dict:
    preset, overrides = TIERS[tier]
    cfg = load_config(ROOT / "configs" / preset, [*overrides, *ROWS[name]])
    if cfg.data.path is not None and not Path(cfg.data.path).is_absolute():
        cfg.data.path = str((ROOT / cfg.data.path).resolve())
    trainer = Trainer(cfg, out / name, quiet=True)
    start = time.perf_counter()
    summary = trainer.fit()
    method = trainer.method
    return {"row": name, "method": summary["method"], "test_accuracy": summary["test_accuracy"],
            "weight_density": summary.get("weight_density", 1.0),
            "R_s": method.rate() if hasattr(method, "rate") else 1.0,
            "train_flops_vs_dense_rigl_model": (method.train_flops_ratio() if hasattr(method, "train_flops_ratio")
                                                else 1.0),
            "ledger_train_flops": summary["train_flops"], "train_time_s": summary["train_time_s"],
            "final_macs": summary["macs"], "dense_macs": summary["dense_macs"],
            "wall_s": time.perf_counter() - start}


def table(results: dict[str, dict]) -> str:
    dense = results.get("dense")
    lines = ["| row | accuracy | weight density | R_s | train FLOPs vs dense (RigL model) | final MACs vs dense "
             "| train time vs dense |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        time_ratio = f"{r['train_time_s'] / dense['train_time_s']:.2f}" if dense else "-"
        lines.append(f"| {name} | {100 * r['test_accuracy']:.2f}% | {r['weight_density']:.3f} | {r['R_s']:.3f} "
                     f"| {r['train_flops_vs_dense_rigl_model']:.3f} | {r['final_macs'] / r['dense_macs']:.3f} "
                     f"| {time_ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--tier", choices=sorted(TIERS), default="digits")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in args.rows.split(","):
        results[name] = run_row(name, args.out, args.tier)
        path.write_text(json.dumps(results, indent=1, sort_keys=True))
        print(json.dumps(results[name]), flush=True)
    ordered = {n: results[n] for n in ROWS if n in results}
    print(table(ordered))


if __name__ == "__main__":
    main()
