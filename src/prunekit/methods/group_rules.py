"""Shared channel-group rules of the classic methods (PruneTrain, Network Slimming, HRank, one-shot baselines).

Everything here works on the supernet (full width) and a ChannelPlan, and maps per-layer criteria from
`prunekit.criteria` onto channel groups through the groups' tensor slices, so flattens (one channel -> several
Linear columns) and concatenations (offset positions) are handled the same way as by materialize/absorb.
BN scales per group are `structured.group_gammas`, MACs of a plan `channels.macs_estimator` / `plan_macs`, and
the search for a rate that meets a MACs target the integer bisection `structured.smallest_reaching`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from prunekit.channels import ChannelGroup, ChannelPlan
from prunekit.channels.readers import kept_fraction, removed_counts, sparse_sides
from prunekit.criteria import keep_top, prune_count, removable_channels, sparse_channel_masks
from prunekit.errors import UserError
from prunekit.methods.base import Decision, Method, TrainContext


def prunetrain_removable(model: nn.Module, groups: Sequence[ChannelGroup],
                         threshold: float) -> dict[str, torch.Tensor]:
    """Per group: True where the channel is sparse for EVERY writer and EVERY reader (PruneTrain Step 4).

    `model` is `masked_copy(supernet, plan, groups)`: channels the plan already removed are zero there and count
    as sparse. On a single-producer group this is "sparse as the output of layer l and as the input of layer
    l+1"; on a residual stream (several writers and readers) it keeps the union of the dense channels of all of
    them ("channel union").
    """
    masks = sparse_channel_masks(model, threshold)
    result: dict[str, torch.Tensor] = {}
    for group in groups:
        writers, readers = sparse_sides(model, group, masks)
        if not writers or not readers:
            result[group.name] = torch.zeros(group.size, dtype=torch.bool)  # cannot judge: keep everything
            continue
        result[group.name] = removable_channels(writers, readers)
    return result


def shrink_keep(kept: Sequence[int], remove: set[int], scores: torch.Tensor, min_channels: int) -> list[int]:
    """`kept` minus `remove`, but never fewer than min(min_channels, len(kept)) channels: when too few would
    survive, the highest-scoring channels of `kept` stay (ties: lower index)."""
    survivors = [c for c in kept if c not in remove]
    floor = min(min_channels, len(kept))
    if len(survivors) >= floor:
        return survivors
    chosen = keep_top(scores[list(kept)].double(), floor)
    return sorted(kept[i] for i in chosen)


def uniform_keep(scores: torch.Tensor, kept: Sequence[int], rate: float, size: int, min_channels: int) -> list[int]:
    """Remove floor(rate * size) channels of the full group (counted against the full width, so rate 0.5
    halves every group), the lowest-scoring among the channels still kept; at least `min_channels` stay."""
    target = size - prune_count(size, rate)
    target = max(min(target, len(kept)), min(min_channels, len(kept)))
    chosen = keep_top(scores[list(kept)].double(), target)
    return sorted(kept[i] for i in chosen)


def check_rate(rate: float, what: str) -> None:
    """UserError unless 0 <= rate <= 1."""
    if not 0.0 <= rate <= 1.0 or math.isnan(rate):
        raise UserError(f"{what} must lie in [0, 1], got {rate}")


def require_prune_epoch(prune_epoch: int) -> None:
    """UserError when method.params.prune_epoch was not given (its default is -1)."""
    if prune_epoch < 0:
        raise UserError("method.params.prune_epoch is required: the number of epochs trained before pruning "
                        f"(0 = at initialisation), got {prune_epoch}")


def check_prune_epoch(prune_epoch: int, epochs: int, method: str) -> None:
    """UserError unless the pruning epoch lies within the run (0 = before the first step)."""
    if not 0 <= prune_epoch <= epochs:
        raise UserError(f"{method}: method.params.prune_epoch must lie in [0, train.epochs = {epochs}], "
                        f"got {prune_epoch}")


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
