"""Shared channel-group rules of the classic methods (PruneTrain, Network Slimming, HRank, one-shot baselines).

Everything here works on the supernet (full width) and a ChannelPlan, and maps per-layer criteria from
`prunekit.criteria` onto channel groups through the groups' tensor slices, so flattens (one channel -> several
Linear columns) and concatenations (offset positions) are handled the same way as by materialize/absorb.
BN scales per group are `structured.group_gammas`, MACs of a plan `channels.macs_estimator` / `plan_macs`, and
the search for a rate that meets a MACs target the integer bisection `structured.smallest_reaching`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import torch
from torch import nn

from prunekit.channels import ChannelGroup, ChannelPlan
from prunekit.channels.groups import is_plain_weight_layer
from prunekit.criteria import keep_top, l1_filter_norms, prune_count, removable_channels, sparse_channel_masks
from prunekit.errors import UserError
from prunekit.methods.base import Decision, Method, TrainContext


def masked_copy(supernet: nn.Module, plan: ChannelPlan | None, groups: Sequence[ChannelGroup]) -> nn.Module:
    """The supernet with every channel the plan removed set to zero in every tensor slice, for reading only.

    The supernet keeps the most recently used values of removed channels (MRU bank); zeroing them makes
    per-layer criteria (row maxima, norms) look only at what the current subnet actually computes with. A deep
    copy when the plan removes something; the supernet itself (no copy) when `plan` is None or removes nothing.
    """
    if plan is None or all(len(plan.kept(g)) == g.size for g in groups):
        return supernet
    model = copy.deepcopy(supernet)
    with torch.no_grad():
        for group in groups:
            kept = set(plan.kept(group))
            if len(kept) == group.size:
                continue
            for piece in group.slices:
                positions = [p for p, c in zip(piece.positions, piece.channels, strict=True) if c not in kept]
                if not positions:
                    continue
                tensor = getattr(model.get_submodule(piece.module), piece.tensor)
                index = torch.tensor(positions, dtype=torch.long, device=tensor.device)
                tensor.index_fill_(piece.dim, index, 0.0)
    return model


def _per_channel_all(flags: torch.Tensor, piece_positions: Sequence[int], piece_channels: Sequence[int],
                     size: int) -> torch.Tensor:
    """Channel c is True iff every position of this slice that carries c is True (True when none does)."""
    dense = (~flags.detach().cpu()[list(piece_positions)]).long()
    dense_count = torch.zeros(size, dtype=torch.long).index_add_(0, torch.tensor(piece_channels), dense)
    return dense_count == 0


def sparse_sides(model: nn.Module, group: ChannelGroup,
                 masks: Mapping[str, Mapping[str, torch.Tensor]]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(one sparsity vector per writer, one per reader) of `group`, in group channels.

    Writers are the group's conv/linear producers (output rows, weight dim 0), readers its consumers (input
    columns, weight dim 1); `masks` is `sparse_channel_masks(model)`. Depthwise convs that carry the group are
    left out: PruneTrain does not regularise them, and they only pass each channel through to the readers.
    """
    writers: list[torch.Tensor] = []
    readers: list[torch.Tensor] = []
    for piece in group.slices:
        if piece.tensor != "weight" or piece.dim not in (0, 1):
            continue
        module = model.get_submodule(piece.module)
        if not is_plain_weight_layer(module):
            continue
        side = "output" if piece.dim == 0 else "input"
        vector = _per_channel_all(masks[piece.module][side], piece.positions, piece.channels, group.size)
        (writers if side == "output" else readers).append(vector)
    return writers, readers


def group_square_norms(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """Per channel of `group`: sum of squared weights over every conv/linear slice that writes or reads it."""
    total = torch.zeros(group.size, dtype=torch.float64)
    for piece in group.slices:
        if piece.tensor != "weight" or piece.dim not in (0, 1):
            continue
        module = model.get_submodule(piece.module)
        if not is_plain_weight_layer(module):
            continue
        weight = module.weight.detach().to("cpu", torch.float64)
        other = [d for d in range(weight.dim()) if d != piece.dim]
        per_position = weight.pow(2).sum(dim=other)
        channels = torch.tensor(piece.channels, dtype=torch.long)
        total.index_add_(0, channels, per_position[list(piece.positions)])
    return total


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


def l1_group_scores(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """Per channel: the sum over the group's conv/linear producers of the filter L1 norm (Li et al. 2017).

    A single-producer group gets exactly `l1_filter_norms` of its producer."""
    total = torch.zeros(group.size, dtype=torch.float64)
    for piece in group.slices:
        if piece.tensor != "weight" or piece.dim != 0:
            continue
        module = model.get_submodule(piece.module)
        if not is_plain_weight_layer(module):
            continue
        norms = l1_filter_norms(module.weight).to("cpu", torch.float64)
        channels = torch.tensor(piece.channels, dtype=torch.long)
        total.index_add_(0, channels, norms[list(piece.positions)])
    return total


def uniform_keep(scores: torch.Tensor, kept: Sequence[int], rate: float, size: int, min_channels: int) -> list[int]:
    """Remove floor(rate * size) channels of the full group (counted against the full width, so rate 0.5
    halves every group), the lowest-scoring among the channels still kept; at least `min_channels` stay."""
    target = size - prune_count(size, rate)
    target = max(min(target, len(kept)), min(min_channels, len(kept)))
    chosen = keep_top(scores[list(kept)].double(), target)
    return sorted(kept[i] for i in chosen)


def rate_steps(sizes: Sequence[int]) -> list[float]:
    """The rates at which `uniform_keep`'s counts change, ascending: every j / n for a group width n, 0 <= j <= n.

    Between two steps every group removes the same floor(rate * n) channels, so the smallest rate that meets a
    target is a step. Each step is exact enough for `prune_count` (its 1e-9 slack) to give exactly j of n."""
    return [float(f) for f in sorted({Fraction(j, n) for n in sizes for j in range(n + 1)})]


def removed_counts(old: ChannelPlan | None, new: ChannelPlan, groups: Sequence[ChannelGroup]) -> dict[str, int]:
    """Channels each group loses from `old` to `new` (only groups that lose some)."""
    counts = {}
    old = old or ChannelPlan()
    for group in groups:
        lost = len(old.kept(group)) - len(new.kept(group))
        if lost:
            counts[group.name] = lost
    return counts


def kept_fraction(plan: ChannelPlan, groups: Sequence[ChannelGroup]) -> float:
    total = sum(g.size for g in groups)
    return sum(len(plan.kept(g)) for g in groups) / total if total else 1.0


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
