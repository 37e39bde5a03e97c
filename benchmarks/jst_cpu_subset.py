"""JST beside REPrune and dense on a CIFAR-10 subset, ResNet-20, one thread: a short CPU check (about 15 minutes on
a quiet 2-core machine), not the 30-epoch CPU tier.

All three runs use the same data (a stratified 5,000-image training subset with 10% held out, which only JST
reads, and a 2,000-image test subset) and the same schedule length; JST's and REPrune's phases are the CPU-tier
presets' scaled to `--epochs`. Prints one markdown table (test accuracy, MACs ratio, training time against dense,
search share of JST's time).

    OMP_NUM_THREADS=1 python benchmarks/jst_cpu_subset.py --out /work/bench/jst-subset --epochs 15

Side by side on two cores: start one process per run (`--runs dense` on one core, `--runs jst` on the other, e.g.
with `taskset -c 0` / `-c 1`), then run without `--runs` once both are done; finished runs are read back, not
re-run, and an interrupted one is resumed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prunekit import io
from prunekit.config import load_config
from prunekit.train.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRESETS = {"dense": "cifar10-resnet20-dense.yaml", "reprune": "reprune-cifar10-resnet20.yaml",
           "jst": "jst-cifar10-resnet20.yaml"}


def overrides(epochs: int, train_subset: int, test_subset: int) -> list[str]:
    return [f"train.epochs={epochs}", f"data.train_subset={train_subset}", f"data.test_subset={test_subset}",
            "data.val_fraction=0.1", "train.threads=1", "train.progress=never"]


def method_overrides(name: str, epochs: int) -> list[str]:
    """The presets' phases scaled from 30 epochs to `epochs` (coarse 1/3, T = 1/3 of one-epoch samples)."""
    if name == "jst":
        third = max(1, epochs // 3)
        return [f"method.params.coarse_epochs={third}", f"method.params.samples={third}"]
    if name == "reprune":
        return [f"method.params.t_prune={max(2, round(0.6 * epochs))}"]
    return []


def run(name: str, preset: str, out: Path, args: argparse.Namespace) -> dict:
    run_dir = out / name
    if (run_dir / "summary.json").is_file():
        return io.read_json(run_dir / "summary.json")
    if (run_dir / "config.yaml").is_file():  # interrupted: continue it
        return Trainer.resume(run_dir).fit()
    cfg = load_config(CONFIGS / preset, [*overrides(args.epochs, args.train_subset, args.test_subset),
                                         *method_overrides(name, args.epochs)])
    return Trainer(cfg, run_dir).fit()  # one line per epoch on stdout


def search_seconds(run_dir: Path) -> float:
    """JST: the epoch time spent before fine-tuning (coarse training and search)."""
    records = io.read_jsonl(run_dir / "metrics.jsonl")
    final = next(r["step"] for r in records if r["kind"] == "decision" and r.get("jst_phase") == "finetune")
    return sum(r["epoch_time_s"] for r in records if r["kind"] == "epoch" and r["step"] <= final)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train-subset", type=int, default=5000)
    parser.add_argument("--test-subset", type=int, default=2000)
    parser.add_argument("--runs", nargs="+", choices=list(PRESETS), default=list(PRESETS),
                        help="train only these runs (the table needs dense and jst)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = {name: run(name, PRESETS[name], args.out, args) for name in PRESETS if name in args.runs}
    if not {"dense", "jst"} <= set(rows):
        return
    dense = rows["dense"]
    print("| run | test acc | MACs ratio | train time s | vs dense | train FLOPs vs dense |")
    print("|---|---|---|---|---|---|")
    for name, s in rows.items():
        print(f"| {name} | {100 * s['test_accuracy']:.2f}% | {s['macs'] / s['dense_macs']:.3f} | "
              f"{s['train_time_s']:.0f} | {s['train_time_s'] / dense['train_time_s']:.2f} | "
              f"{s['train_flops'] / dense['train_flops']:.2f} |")
    share = search_seconds(args.out / "jst") / rows["jst"]["train_time_s"]
    print(f"\nJST: coarse training + search took {100 * share:.0f}% of its training time")
    io.write_json(args.out / "table.json", json.loads(json.dumps(rows)))


if __name__ == "__main__":
    main()
