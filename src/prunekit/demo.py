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
        "| preset | method | test acc | params | MACs | MACs vs dense | train time (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for preset, s in rows:
        lines.append(
            f"| {preset} | {s['method']} | {100 * s['test_accuracy']:.2f}% | {s['params']:,} | "
            f"{s['macs'] / 1e6:.3f}M | {s['macs'] / s['dense_macs']:.2f}x | {s['train_time_s']:.1f} |"
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
    print("\nMACs per sample of one forward pass (FLOPs = 2 x MACs, dense MACs for weight-sparse methods); train "
          "time is wall-clock on this machine.")
    write_demo_report(root, [preset for preset, _ in rows])
    return 0


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
