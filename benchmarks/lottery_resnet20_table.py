"""Tables for benchmarks/lottery_resnet20_cpu.sh: retraining modes at one sparsity, and LMC instability vs k.

    python benchmarks/lottery_resnet20_table.py OUT_ROOT     # prints two Markdown tables
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MODES = {"lr_rewind": "LR rewinding (k = 0)", "finetune": "fine-tuning at the schedule's final LR (4.9e-7)",
         "finetune-lr1e-3": "fine-tuning at LR 0.001 (Renda et al.'s final LR)",
         "reset": "weight rewinding to 0 (reset)"}


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def modes_table(root: Path) -> list[str]:
    lines = ["| retraining | level 0 (dense) test acc | weights kept | test acc after retraining | retrain time s |",
             "|---|---:|---:|---:|---:|"]
    for mode, label in MODES.items():
        path = root / mode / "lottery.json"
        if not path.exists():
            lines.append(f"| {label} | - | - | not run | - |")
            continue
        rows = {r["level"]: r for r in read(path)["levels"] if r["kind"] == "ticket"}
        dense, ticket = rows.get(0), rows.get(1)
        if dense is None or ticket is None:
            lines.append(f"| {label} | - | - | unfinished | - |")
            continue
        lines.append(f"| {label} | {dense['test_accuracy']:.2%} | {ticket['weight_density']:.1%} | "
                     f"{ticket['test_accuracy']:.2%} | {ticket['train_time_s']:.0f} |")
    return lines


def lmc_table(root: Path) -> list[str]:
    lines = ["| k | start step | endpoints' test error (A, B) | test barrier | train barrier |",
             "|---|---:|---|---:|---:|"]
    for path in sorted(root.glob("lmc-*/lmc.json"), key=lambda p: read(p)["start_step"]):
        data = read(path)
        test = data["errors"]["test"]
        lines.append(f"| {path.parent.name.removeprefix('lmc-')} | {data['start_step']} | "
                     f"{test[0]:.2%}, {test[-1]:.2%} | {data['barrier']['test']:.2%} | "
                     f"{data['barrier']['train']:.2%} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    root = parser.parse_args().root
    print("\n".join(modes_table(root)))
    print()
    print("\n".join(lmc_table(root)))


if __name__ == "__main__":
    main()
