"""What the chained-input fix of issue 17 changes in a REPrune/CHEX decision, replayed on a finished run's weights.

Since the fix, groups are decided in dependency order and each is clustered over the input channels that THIS
decision keeps (REPrune's hard-pruning consistency). Before it, every group was clustered over the inputs of the
plan in force before the decision. This script loads a finished run's final checkpoint and replays the decision at
epoch boundary T twice on the same weights and seed: as the code decides now, and with the pre-fix input rule
(`filter_inputs` patched to report no group feeding another, so every group reads the old plan's inputs). It
prints, per group, the kept count and how many kept channels differ between the two.

    python benchmarks/chained_decision.py RUN_DIR --t 10 [--t 18] [--from-full]

--from-full replays from the full width (no channel removed before the decision; the supernet holds the last
values of removed channels), which is where the streams shrink at the decision and the rule matters most; without
it the replay starts from the run's final plan. Only a run with a chain of prunable groups (policy `all` on a
ResNet, VGG) can differ. Loads the run's data and model; writes nothing.
"""

from __future__ import annotations

import argparse
import json
from unittest import mock

import torch

import prunekit.methods.prune_regrow as prune_regrow
from prunekit.train.trainer import Trainer


def replay(run_dir: str, t: int, from_full: bool) -> dict[str, tuple[int, int]]:
    trainer = Trainer.resume(run_dir, quiet=True)
    trainer.setup()
    trainer._restore()  # the final checkpoint: supernet, plan, method state
    trainer.method.on_train_start(trainer.ctx)
    trainer._restore_method_tensors()
    if from_full:
        trainer.ctx.plan = None
    chained = trainer.method.decide(t, trainer.ctx)
    with mock.patch.object(prune_regrow, "filter_inputs", lambda groups, model: {g.name: set() for g in groups}):
        stale = trainer.method.decide(t, trainer.ctx)
    return {name: (len(kept), len(set(kept) - set(stale.plan.keep[name])))
            for name, kept in chained.plan.keep.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--t", type=int, action="append", required=True, help="decision epoch boundary (repeatable)")
    parser.add_argument("--from-full", action="store_true", help="replay from the full width, not the final plan")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for t in args.t:
        result = replay(args.run_dir, t, args.from_full)
        changed = {g: d for g, (_, d) in result.items() if d}
        print(json.dumps({"t": t, "from_full": args.from_full, "groups": len(result),
                          "groups_changed": len(changed), "kept_and_differing": result}))


if __name__ == "__main__":
    main()
