"""Shared channel-group rules of the classic methods (PruneTrain, Network Slimming, HRank, one-shot baselines).

Everything here works on the supernet (full width) and a ChannelPlan, and maps per-layer criteria from
`prunekit.criteria` onto channel groups through the groups' tensor slices, so flattens (one channel -> several
Linear columns) and concatenations (offset positions) are handled the same way as by materialize/absorb.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from prunekit.channels import ChannelGroup, ChannelPlan, kept_indices, materialize
from prunekit.channels.groups import forward_profile, is_depthwise
from prunekit.criteria import keep_top, l1_filter_norms, prune_count, removable_channels, sparse_channel_masks
from prunekit.errors import UserError
from prunekit.measure import count_macs
from prunekit.methods.base import Decision, Method, TrainContext


def current_keep(plan: ChannelPlan | None, group: ChannelGroup) -> list[int]:
    """The channels `group` keeps under `plan` (all of them when the plan is None or does not name it)."""
    if plan is None or group.name not in plan.keep:
        return list(range(group.size))
    return list(plan.keep[group.name])


def _is_plain_weight_layer(module: nn.Module) -> bool:
    """Conv (not depthwise) or Linear: the layers whose weights define a channel's reads and writes."""
    if isinstance(module, _ConvNd):
        return not is_depthwise(module)
    return isinstance(module, nn.Linear)


def masked_copy(supernet: nn.Module, plan: ChannelPlan | None, groups: Sequence[ChannelGroup]) -> nn.Module:
    """A deep copy of the supernet with every channel the plan removed set to zero in every tensor slice.

    The supernet keeps the most recently used values of removed channels (MRU bank); zeroing them makes
    per-layer criteria (row maxima, norms) look only at what the current subnet actually computes with.
    """
    model = copy.deepcopy(supernet)
    if plan is None:
        return model
    with torch.no_grad():
        for group in groups:
            kept = set(current_keep(plan, group))
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
        if not _is_plain_weight_layer(module):
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
        if not _is_plain_weight_layer(module):
            continue
        weight = module.weight.detach().to("cpu", torch.float64)
        other = [d for d in range(weight.dim()) if d != piece.dim]
        per_position = weight.pow(2).sum(dim=other)
        channels = torch.tensor(piece.channels, dtype=torch.long)
        total.index_add_(0, channels, per_position[list(piece.positions)])
    return total


def prunetrain_removable(supernet: nn.Module, plan: ChannelPlan | None, groups: Sequence[ChannelGroup],
                         threshold: float) -> dict[str, torch.Tensor]:
    """Per group: True where the channel is sparse for EVERY writer and EVERY reader (PruneTrain Step 4).

    On a single-producer group this is "sparse as the output of layer l and as the input of layer l+1"; on a
    residual stream (several writers and readers) it keeps the union of the dense channels of all of them
    ("channel union"). Channels the plan already removed are zero and count as sparse.
    """
    model = masked_copy(supernet, plan, groups)
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
        if not _is_plain_weight_layer(module):
            continue
        norms = l1_filter_norms(module.weight).to("cpu", torch.float64)
        channels = torch.tensor(piece.channels, dtype=torch.long)
        total.index_add_(0, channels, norms[list(piece.positions)])
    return total


def group_norm_layers(group: ChannelGroup) -> list[str]:
    """The BatchNorms on the group: the one after its first producer first, then the others."""
    names = [group.bn] if group.bn is not None else []
    return names + [n for n in group.norms if n not in names]


def bn_group_scores(model: nn.Module, group: ChannelGroup) -> torch.Tensor | None:
    """Per channel: max |gamma| over the group's affine BatchNorms (one BN: its |gamma|); None without any.

    On a residual stream a channel is unimportant only when every BN writing it has a small scale."""
    scores: torch.Tensor | None = None
    for name in group_norm_layers(group):
        bn = model.get_submodule(name)
        if not isinstance(bn, _BatchNorm) or bn.weight is None or bn.weight.numel() != group.size:
            continue
        gamma = bn.weight.detach().abs().to("cpu", torch.float64)
        scores = gamma if scores is None else torch.maximum(scores, gamma)
    return scores


def uniform_keep(scores: torch.Tensor, kept: Sequence[int], rate: float, size: int, min_channels: int) -> list[int]:
    """Remove floor(rate * size) channels of the full group (counted against the full width, so rate 0.5
    halves every group), the lowest-scoring among the channels still kept; at least `min_channels` stay."""
    target = size - prune_count(size, rate)
    target = max(min(target, len(kept)), min(min_channels, len(kept)))
    chosen = keep_top(scores[list(kept)].double(), target)
    return sorted(kept[i] for i in chosen)


def plan_macs(supernet: nn.Module, plan: ChannelPlan, groups: Sequence[ChannelGroup],
              example_inputs: torch.Tensor) -> int:
    """MACs per sample of the subnet the plan gives, measured (materialize + `count_macs`)."""
    return count_macs(materialize(supernet, plan, list(groups)), example_inputs[:1])


def macs_estimator(supernet: nn.Module, groups: Sequence[ChannelGroup],
                   example_inputs: torch.Tensor) -> Callable[[ChannelPlan], float]:
    """A fast function plan -> MACs per sample of its subnet, without building the subnet.

    Each Conv/Linear's dense MACs (one traced forward) scale with the kept fraction of every weight dim the plan
    shrinks (depthwise convs: of their channels only); everything else counted by `count_macs` is taken as
    constant. Exact for networks whose MACs are all in Conv/Linear layers; check the final plan with `plan_macs`.
    """
    per_module, _ = forward_profile(supernet, example_inputs[:1])
    names = {module: name for name, module in supernet.named_modules()}
    dense_total = count_macs(supernet, example_inputs[:1])

    def estimate(plan: ChannelPlan) -> float:
        kept = kept_indices(supernet, list(groups), plan)
        saved = 0.0
        for module, macs in per_module.items():
            dims = kept.get((names[module], "weight"), {})
            ratio = 1.0
            for dim, index in dims.items():
                ratio *= index.numel() / module.weight.shape[dim]
            saved += macs * (1.0 - ratio)
        return dense_total - saved

    return estimate


def search_rate_for_macs(make_plan: Callable[[float], ChannelPlan], macs_of: Callable[[ChannelPlan], float],
                         target_macs: float, iterations: int = 20) -> tuple[float, ChannelPlan, int]:
    """The smallest uniform rate (by bisection on [0, 1]) whose plan has at most `target_macs` MACs.

    MACs fall monotonically as the rate grows (each group keeps fewer channels). When even rate 1 (every
    group at its floor) exceeds the target, that plan is returned. Returns (rate, plan, its MACs)."""
    best_rate, best_plan = 1.0, make_plan(1.0)
    best_macs = macs_of(best_plan)
    if best_macs > target_macs:
        return best_rate, best_plan, best_macs
    low, high = 0.0, 1.0
    for _ in range(iterations):
        mid = (low + high) / 2
        plan = make_plan(mid)
        macs = macs_of(plan)
        if macs <= target_macs:
            high, best_rate, best_plan, best_macs = mid, mid, plan, macs
        else:
            low = mid
    return best_rate, best_plan, best_macs


def removed_counts(old: ChannelPlan | None, new: ChannelPlan, groups: Sequence[ChannelGroup]) -> dict[str, int]:
    """Channels each group loses from `old` to `new` (only groups that lose some)."""
    counts = {}
    for group in groups:
        lost = len(current_keep(old, group)) - len(current_keep(new, group))
        if lost:
            counts[group.name] = lost
    return counts


def kept_fraction(plan: ChannelPlan, groups: Sequence[ChannelGroup]) -> float:
    total = sum(g.size for g in groups)
    return sum(len(current_keep(plan, g)) for g in groups) / total if total else 1.0


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
        plan, info = self.make_plan(ctx)
        self.pruned = True
        info = {"removed": removed_counts(ctx.plan, plan, ctx.groups),
                "kept_fraction": kept_fraction(plan, ctx.groups), **info}
        return Decision(plan=plan, info=info)

    def state_dict(self) -> dict[str, Any]:
        return {"pruned": self.pruned}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pruned = bool(state.get("pruned", False))
