"""`make demo`: train the quickstart presets and print a results table.

Each preset runs into `runs/demo/<preset>`; a finished run is reused and an interrupted one resumed, so a
second `make demo` only prints the table.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from prunekit import io
from prunekit.config import load_config
from prunekit.errors import UserError
from prunekit.train.trainer import Trainer

# Dense, the flagship (REPrune), its regrowth parent (CHEX), the two classic training-time methods, dynamic sparse
# training (RigL) and Joint Search-and-Training; the other quickstarts (hrank, l1, tp, bn) run the same way with
# `prunekit train configs/quickstart-<name>.yaml`.
PRESETS = ["quickstart", "quickstart-reprune", "quickstart-chex", "quickstart-prunetrain", "quickstart-slimming",
           "quickstart-rigl", "quickstart-jst"]


def run_preset(preset: str, root: Path) -> dict[str, Any]:
    run_dir = root / preset
    if (run_dir / "summary.json").exists():
        print(f"[{preset}] finished earlier: {run_dir}")
        return io.read_json(run_dir / "summary.json")
    if (run_dir / "checkpoints" / "latest.json").exists():
        return Trainer.resume(run_dir).fit()
    if run_dir.exists():  # started but no checkpoint yet: nothing worth keeping
        import shutil

        shutil.rmtree(run_dir)
    cfg = load_config(Path("configs") / f"{preset}.yaml")
    return Trainer(cfg, run_dir).fit()


def results_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    lines = [
        "| preset | method | test acc | params | weights kept | MACs | MACs vs dense | train time (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for preset, s in rows:
        lines.append(
            f"| {preset} | {s['method']} | {100 * s['test_accuracy']:.2f}% | {s['params']:,} | "
            f"{100 * s.get('weight_density', 1.0):.0f}% | {s['macs'] / 1e6:.3f}M | "
            f"{s['macs'] / s['dense_macs']:.2f}x | {s['train_time_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    root = Path("runs") / "demo"
    try:
        rows = [(preset, run_preset(preset, root)) for preset in PRESETS]
    except UserError as exc:
        print(f"prunekit: error: {exc}", file=sys.stderr)
        return 2
    print()
    print(results_table(rows))
    print("\nMACs per sample of one forward pass (FLOPs = 2 x MACs; weight-sparse methods such as RigL keep the dense "
          "shapes, so their saving shows under 'weights kept', not MACs); train time is wall-clock on this machine.")
    lottery_dir = run_lottery(root)
    federated_dir = run_federated(root)
    write_demo_report(root, [preset for preset, _ in rows] + [d for d in (lottery_dir, federated_dir) if d])
    return 0


def run_lottery(root: Path) -> str | None:
    """Iterative magnitude pruning with its controls on digits (configs/lottery/quickstart.yaml, about 10 s)."""
    from prunekit.lottery.config import load_lottery_config
    from prunekit.lottery.driver import LotteryDriver

    summary = LotteryDriver(*load_lottery_config("configs/lottery/quickstart.yaml"), root / "lottery").run()
    print("\nlottery tickets (IMP, configs/lottery/quickstart.yaml):")
    print("| level | run | weights left | test acc |\n|---:|---|---:|---:|")
    for row in summary["levels"]:
        print(f"| {row['level']} | {row['kind']} | {100 * row['weight_density']:.1f}% | "
              f"{100 * row['test_accuracy']:.2f}% |")
    return "lottery"


def run_federated(root: Path) -> str | None:
    """FedDST on Flower's simulation engine (configs/federated/quickstart.yaml, about a minute)."""
    try:
        from prunekit.federated.runner import federate
    except ImportError as exc:  # Flower is an optional extra
        print(f"(no federated quickstart: {exc}; pip install 'prunekit[federated]')")
        return None
    run_dir = root / "federated"
    if (run_dir / "summary.json").exists():
        summary = io.read_json(run_dir / "summary.json")
    else:
        summary = federate("configs/federated/quickstart.yaml", out=str(run_dir), quiet=True, restart=True)
    print(f"\nfederated sparse training (configs/federated/quickstart.yaml): test acc "
          f"{100 * summary['test_accuracy']:.2f}% after {summary['rounds']} rounds, uploads "
          f"{summary['upload_bits'] / 8e6:.2f} MB")
    return "federated"


def write_demo_report(root: Path, presets: list[str]) -> None:
    """runs/demo/report.html: every demo run's curves, widths and summary in one self-contained page."""
    out = root / "report.html"
    try:
        from prunekit.report import write_report

        write_report([root / preset for preset in presets], out)
    except ImportError as exc:  # matplotlib is an optional extra
        print(f"(no report: {exc}; pip install 'prunekit[report]')")
        return
    print(f"report: {out}")


if __name__ == "__main__":
    sys.exit(main())
