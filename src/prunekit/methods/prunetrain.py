"""PruneTrain (Lym et al., SC'19): group lasso from the first step, periodic physical reconfiguration.

- Loss (PruneTrain Step 1-2; research note classic_methods.md §1.2): L = CE + lambda_g * R_GL(W), R_GL the sum of
  the L2 norms of every conv's input- and output-channel groups and every Linear's input columns (the first
  layer's input, the classifier's outputs and depthwise convs excluded: `criteria.group_lasso_penalty`).
- lambda_g = r * CE / ((1 - r) * R_GL) on the first mini-batch, then fixed (`criteria.calibrate_group_lasso_weight`).
  The hook contract gives `regularizer(model)` no loss value, so the calibration happens in `on_train_start`:
  one forward pass of `ctx.model` in training mode on the first batch of `ctx.train_batches()` (the same images
  as the trainer's first step, in the same order, but without augmentation), without gradient, with the BN
  running statistics restored afterwards, and plain cross entropy (no label smoothing). A user's own loop may
  instead call `calibrate(ce_loss, model)` with its real first loss before the first `regularizer` call.
- Every `interval` epochs (Step 4): a channel is sparse for a layer when all its weights there have
  |w| < threshold; a channel of a group is removed only when it is sparse for every layer that writes it and
  every layer that reads it (`prunetrain_removable`). On residual streams (policy "all") that is
  the union of the dense channels of all writers and readers ("channel union"). The new plan only shrinks the
  old one; a group never drops below `min_channels` (PruneTrain instead removes a residual branch whose conv
  reaches zero channels; we keep its `min_channels` strongest channels).
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.channels import ChannelGroup, ChannelPlan
from prunekit.channels.readers import group_square_norms, kept_fraction, masked_copy, removed_counts, sparse_sides
from prunekit.channels.widths import check_round_to
from prunekit.criteria import (
    calibrate_group_lasso_weight,
    group_lasso_layers,
    group_lasso_penalty_from_layers,
    keep_top,
    removable_channels,
    sparse_channel_masks,
)
from prunekit.criteria.group_lasso import PRUNETRAIN_THRESHOLD, GroupLassoLayer
from prunekit.errors import UserError
from prunekit.measure import train_mode
from prunekit.methods import METHODS
from prunekit.methods.base import Decision, Method, TrainContext
from prunekit.methods.params import MIN_CHANNELS_HELP, ChannelParams, param
from prunekit.methods.widths import ROUND_TO_HELP, PlanRounding, only_within


@dataclasses.dataclass
class PruneTrainParams(ChannelParams):
    """method.params of `prunetrain` (its channel policy is always "all")."""

    penalty_ratio: float = param(0.2, "r: the group lasso's share of the first batch's total loss, in (0, 1)")
    interval: int = param(10, "epochs between reconfigurations (paper: 10 on CIFAR, 5 on ImageNet)")
    threshold: float = param(PRUNETRAIN_THRESHOLD, "|w| below this counts as zero (PruneTrain: 1e-4)")
    min_channels: int = param(1, MIN_CHANNELS_HELP)
    exclude: list[str] = param(help="module names (with their submodules) left out of the group lasso",
                               factory=list)
    round_to: int | Literal["hardware"] = param(1, f"{ROUND_TO_HELP}. Channels added back are the removed ones "
                                                   "with the largest weight norms (only those sparsified now); "
                                                   "hardware rounding may also drop live channels, smallest "
                                                   "norms first (a departure from PruneTrain, which only removes "
                                                   "sparse channels)")

    def __post_init__(self) -> None:
        self.check_channel_params()
        if not 0.0 < self.penalty_ratio < 1.0:
            raise UserError(f"method.params.penalty_ratio must lie in (0, 1), got {self.penalty_ratio}")
        if self.interval < 1:
            raise UserError(f"method.params.interval must be a positive number of epochs, got {self.interval}")
        if not self.threshold > 0:
            raise UserError(f"method.params.threshold must be positive, got {self.threshold}")
        check_round_to(self.round_to)


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


def first_batch_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Cross entropy of one training-mode forward pass, without gradient, leaving the BN statistics as they were."""
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        with train_mode(model), torch.no_grad():
            loss = F.cross_entropy(model(images).float(), labels)
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
    return float(loss)


@METHODS.register("prunetrain")
class PruneTrain(Method):
    """PruneTrain: calibrated group lasso + reconfiguration every `interval` epochs (module docstring)."""

    name = "prunetrain"
    summary = "group lasso from the first step; every few epochs remove the channels sparse for every writer and reader"
    paper = "Lym et al., PruneTrain: Fast Neural Network Training by Dynamic Sparse Model Reconfiguration, SC 2019"
    channel_policy = "all"
    Params = PruneTrainParams

    def __init__(self, params: PruneTrainParams | None = None) -> None:
        self.params = params or PruneTrainParams()
        self.rounding = PlanRounding(self.params.round_to, self.params.min_channels)
        self.penalty_weight: float | None = None  # lambda_g, fixed once calibrated
        self.rounding_info: dict[str, Any] = {}  # what round_to did at the latest reconfiguration
        # The layers R_GL covers, found once per network. The trainer swaps in a new subnet object at every
        # reconfiguration; `on_model_changed` drops the cache then. Until every loop calls that hook, the cache
        # is also keyed by the model's identity (a weak reference, not kept alive).
        self._layers: list[GroupLassoLayer] = []
        self._layers_of: weakref.ref[nn.Module] | None = None

    # ----------------------------------------------------------------- regularizer
    def penalty_layers(self, model: nn.Module) -> list[GroupLassoLayer]:
        """`criteria.group_lasso_layers(model, exclude)`, cached while `model` is the same object."""
        if self._layers_of is None or self._layers_of() is not model:
            try:
                self._layers = group_lasso_layers(model, exclude=self.params.exclude)
            except ValueError as exc:  # an `exclude` name the model does not have
                raise UserError(f"prunetrain: method.params.exclude: {exc}") from exc
            self._layers_of = weakref.ref(model)
        return self._layers

    def on_model_changed(self, model: nn.Module) -> None:
        self._layers, self._layers_of = [], None

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """R_GL(W) of `model` (differentiable)."""
        return group_lasso_penalty_from_layers(self.penalty_layers(model))

    def calibrate(self, ce_loss: float, model: nn.Module) -> float:
        """Fix lambda_g = r CE / ((1 - r) R_GL(model)) from the first batch's cross entropy; returns it."""
        with torch.no_grad():
            penalty = float(self.penalty(model))
        self.penalty_weight = calibrate_group_lasso_weight(ce_loss, penalty, self.params.penalty_ratio)
        return self.penalty_weight

    def on_train_start(self, ctx: TrainContext) -> Decision | None:
        if self.penalty_weight is not None:  # resumed, or calibrated by the user
            return None
        if ctx.train_batches is None:
            raise RuntimeError("prunetrain needs ctx.train_batches to calibrate its penalty weight "
                               "(or call calibrate() before training)")
        images, labels = next(iter(ctx.train_batches()))
        ce = first_batch_loss(ctx.model, images, labels)
        weight = self.calibrate(ce, ctx.model)
        ctx.log({"kind": "prunetrain_calibration", "epoch": -1, "first_batch_ce": ce,
                 "group_lasso": float(self.penalty(ctx.model).detach()), "penalty_weight": weight,
                 "penalty_ratio": self.params.penalty_ratio})
        return None

    def regularizer(self, model: nn.Module) -> torch.Tensor | float:
        if self.penalty_weight is None:
            raise RuntimeError("prunetrain: call on_train_start(ctx) or calibrate(ce, model) before training")
        return self.penalty_weight * self.penalty(model)

    # ----------------------------------------------------------------- reconfiguration
    def plan_from_sparsity(self, ctx: TrainContext) -> ChannelPlan:
        """The current plan minus every channel that is sparse on all sides (PruneTrain Step 4), then rounded
        by `round_to` (its outcome in `self.rounding_info`)."""
        if ctx.groups is None or ctx.supernet is None:
            raise RuntimeError("prunetrain needs ctx.groups and ctx.supernet (channel groups of the model)")
        masked = masked_copy(ctx.supernet, ctx.plan, ctx.groups)  # removed channels read as zero
        removable = prunetrain_removable(masked, ctx.groups, self.params.threshold)
        plan = ctx.plan or ChannelPlan()
        keep: dict[str, list[int]] = {}
        norms: dict[str, torch.Tensor] = {}
        for group in ctx.groups:
            kept = plan.kept(group)
            remove = set(removable[group.name].nonzero().flatten().tolist())
            square_norms = group_square_norms(masked, group)
            keep[group.name] = shrink_keep(kept, remove, square_norms, self.params.min_channels)
            norms[group.name] = only_within(square_norms, kept)  # rounding never brings back an earlier removal
        caps = {g.name: len(plan.kept(g)) for g in ctx.groups}  # plans only shrink
        rounded, self.rounding_info = self.rounding.round_once(ctx, ChannelPlan(keep), ctx.groups, norms, caps)
        return rounded

    def on_epoch_end(self, epoch: int, ctx: TrainContext) -> Decision | None:
        if (epoch + 1) % self.params.interval != 0:
            return None
        start = time.perf_counter()
        plan = self.plan_from_sparsity(ctx)
        seconds = time.perf_counter() - start
        removed = removed_counts(ctx.plan, plan, ctx.groups or [])
        if not removed:
            ctx.log({"kind": "prunetrain_reconfigure", "epoch": epoch, "removed": {}, "select_seconds": seconds})
            return None
        return Decision(plan=plan, info={"removed": removed, "kept_fraction": kept_fraction(plan, ctx.groups or []),
                                         "penalty_weight": self.penalty_weight, "select_seconds": seconds,
                                         **self.rounding_info})

    # ----------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        return {"penalty_weight": self.penalty_weight, **self.rounding.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rounding.load_state_dict(state)
        weight = state.get("penalty_weight")
        self.penalty_weight = None if weight is None else float(weight)
