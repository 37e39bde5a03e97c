"""`PruneOnceMethod`: the base of every method that prunes once, after `params.prune_epoch` epochs, then trains
on (Network Slimming, HRank, the one-shot L1-norm and BN-scale baselines, Torch-Pruning). A subclass writes
`make_plan(ctx) -> (plan, info)`; this class picks the moment, times the decision and logs what it removed.
"""

from __future__ import annotations

import time
from typing import Any

from prunekit.channels import ChannelPlan
from prunekit.channels.readers import kept_fraction, removed_counts
from prunekit.methods.base import Decision, Method, TrainContext
from prunekit.methods.params import check_prune_epoch


class PruneOnceMethod(Method):
    """A method that prunes once, after `params.prune_epoch` epochs (0: before training), then trains on.

    Subclasses implement `make_plan(ctx) -> (plan, info)` from `ctx.supernet` (current weights for kept
    channels), `ctx.model`, `ctx.plan` and `ctx.groups`. The decision is taken in `on_train_start` when
    prune_epoch is 0, otherwise in `on_epoch_end` of epoch index prune_epoch - 1.
    """

    params: Any

    def __init__(self) -> None:
        self.pruned = False

    def make_plan(self, ctx: TrainContext) -> tuple[ChannelPlan, dict[str, Any]]:
        raise NotImplementedError

    def on_train_start(self, ctx: TrainContext) -> Decision | None:
        check_prune_epoch(self.params.prune_epoch, ctx.epochs, self.name)
        if self.params.prune_epoch == 0 and not self.pruned:
            return self._decide(ctx)
        return None

    def on_epoch_end(self, epoch: int, ctx: TrainContext) -> Decision | None:
        if self.pruned or epoch + 1 != self.params.prune_epoch:
            return None
        return self._decide(ctx)

    def _decide(self, ctx: TrainContext) -> Decision:
        if ctx.groups is None or ctx.supernet is None:
            raise RuntimeError(f"{self.name} needs ctx.groups and ctx.supernet (channel groups of the model)")
        start = time.perf_counter()
        plan, info = self.make_plan(ctx)
        seconds = time.perf_counter() - start  # the whole criterion: scores (HRank: feature-map ranks) and cut
        self.pruned = True
        info = {"removed": removed_counts(ctx.plan, plan, ctx.groups),
                "kept_fraction": kept_fraction(plan, ctx.groups), "select_seconds": seconds, **info}
        return Decision(plan=plan, info=info)

    def state_dict(self) -> dict[str, Any]:
        return {"pruned": self.pruned}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pruned = bool(state.get("pruned", False))
