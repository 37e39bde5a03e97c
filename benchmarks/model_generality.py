"""Issue 16: for each structure of tests/channels/zoo.py STRUCTURES (plus the existing zoo), the groups prunekit
finds, the MACs removed when every prunable group (policy "all") keeps 50% of its channels, the MACs Torch-Pruning's
own pruner removes at pruning_ratio 0.5 on the same model, and the analysis time (trace + groups + numerical check).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/model_generality.py [--out benchmarks/results/model_generality.json]

Torch-Pruning's pruner (tp.pruner.BasePruner, magnitude importance, classifier ignored) prunes in place a copy; it
does not check that the result computes what the masked dense model computes (its ShuffleNet and LayerNorm
pruning are approximations), so its column is what it removes, not what is exact. Its failures are reported.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
import torch_pruning as tp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "channels"))
from zoo import INPUT_SHAPE, STRUCTURES, ZOO, build, build_structure  # noqa: E402

from prunekit.channels import ChannelPlan, channel_groups, plan_macs  # noqa: E402
from prunekit.channels.groups import analyse  # noqa: E402
from prunekit.measure import count_macs  # noqa: E402


def torch_pruning_macs(model: torch.nn.Module, example: torch.Tensor) -> tuple[int | None, str]:
    model = copy.deepcopy(model).float()
    example = example.float()
    try:
        ignored = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 5]
        pruner = tp.pruner.BasePruner(model, example, importance=tp.importance.GroupMagnitudeImportance(),
                                      pruning_ratio=0.5, ignored_layers=ignored)
        pruner.step()
        return count_macs(model, example), ""
    except Exception as error:  # reported, not hidden
        return None, f"{type(error).__name__}: {str(error).splitlines()[0][:60] if str(error) else ''}"


def row(name: str, model: torch.nn.Module) -> dict:
    example = torch.zeros(1, *INPUT_SHAPE, dtype=torch.float64)
    start = time.perf_counter()
    analysis = analyse(model, example)
    seconds = time.perf_counter() - start
    groups = channel_groups(model, example)
    plan = ChannelPlan({g.name: list(range(max(1, g.size // 2))) for g in groups if g.size > 1})
    dense = count_macs(model, example)
    ours = plan_macs(model, plan, groups, example)
    theirs, failure = torch_pruning_macs(model, example)
    return {"model": name, "groups_traced": len(analysis.groups), "groups_prunable": len(groups),
            "dense_macs": dense, "prunekit_removed": 1 - ours / dense,
            "tp_removed": None if theirs is None else 1 - theirs / dense, "tp_failure": failure,
            "analysis_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/model_generality.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [row(name, build(name)) for name in ZOO] + [row(name, build_structure(name)) for name in STRUCTURES]
    print(f"{'model':<18} {'groups':>8} {'prunekit':>9} {'TP':>9} {'analysis':>9}")
    for r in rows:
        tp_text = f"{100 * r['tp_removed']:.1f}%" if r["tp_removed"] is not None else "fails"
        groups = f"{r['groups_prunable']:>3}/{r['groups_traced']:<4}"
        print(f"{r['model']:<18} {groups} {100 * r['prunekit_removed']:>8.1f}% {tp_text:>9} {r['analysis_s']:>8.2f}s "
              f"{r['tp_failure']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
