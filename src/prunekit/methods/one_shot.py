"""One-shot structured baselines: prune once after `prune_epoch` epochs, then train on the subnet.

- `l1_filter`: L1-norm filter pruning (Li et al., ICLR 2017, "Pruning Filters for Efficient ConvNets"): in every
  prunable group the filters with the smallest sum |W[o]| go (`criteria.l1_filter_norms`; on a residual stream
  under policy "all", the sum over the stream's writers).
- `bn_scale`: BN-scale pruning: the channels with the smallest |gamma| go (`criteria.bn_scale_importance`'s
  score; the largest |gamma| over a stream's BNs under "all", `channels.readers.group_gammas`). Groups without a
  BatchNorm keep all channels.

How many go: either `rate`, the same fraction of every group's full width (floor(rate * width) channels), or
`target_macs_ratio`, the fraction of the dense model's MACs to keep: the smallest uniform rate whose subnet has at
most that many MACs. The plan only changes at the rates j / width of some group (`budget.rate_steps`), so
the search is an integer bisection over those steps (`budget.MacsBudget`) with the analytic MACs of
`channels.macs_estimator`; the chosen plan's MACs are then measured. A group never keeps fewer than
`min_channels`. Among equal scores the lower channel index is kept (`criteria.keep_top`).

`round_to` (`methods.widths`): an integer rounds kept counts up to its multiples, adding the best-scoring
removed channels (the MACs search prices the rounded plan); "hardware" moves them to this device's fast widths
within the unrounded plan's MACs (the search prices the unrounded plan).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from prunekit.channels import ChannelGroup, ChannelPlan, macs_estimator, plan_macs
from prunekit.channels.readers import group_gammas, l1_group_scores, masked_copy
from prunekit.channels.widths import check_round_to
from prunekit.criteria import keep_top, prune_count
from prunekit.errors import UserError
from prunekit.measure import count_macs
from prunekit.methods import METHODS
from prunekit.methods.base import TrainContext
from prunekit.methods.budget import MacsBudget, rate_steps
from prunekit.methods.params import (
    MIN_CHANNELS_HELP,
    POLICY_HELP,
    PRUNE_EPOCH_HELP,
    TARGET_MACS_HELP,
    ChannelParams,
    check_rate,
    param,
)
from prunekit.methods.prune_once import PruneOnceMethod
from prunekit.methods.widths import ROUND_TO_HELP, PlanRounding


@dataclasses.dataclass
class OneShotParams(ChannelParams):
    """method.params of `l1_filter` and `bn_scale`: give exactly one of `rate` and `target_macs_ratio`."""

    amount_key: ClassVar[str] = "rate"

    prune_epoch: int = param(-1, PRUNE_EPOCH_HELP)
    rate: float | None = param(None, "fraction of every group's channels to remove, in [0, 1]: floor(rate * width) "
                                     "go from each group. Give this or target_macs_ratio")
    target_macs_ratio: float | None = param(None, f"{TARGET_MACS_HELP}: the smallest uniform rate that meets it")
    policy: Literal["internal", "all"] = param("internal", POLICY_HELP)
    min_channels: int = param(1, MIN_CHANNELS_HELP)
    round_to: int | Literal["hardware"] = param(1, ROUND_TO_HELP)

    def __post_init__(self) -> None:
        self.check_channel_params()
        if self.rate is not None:
            check_rate(self.rate, "rate")
        check_round_to(self.round_to)


def uniform_keep(scores: torch.Tensor, kept: Sequence[int], rate: float, size: int, min_channels: int) -> list[int]:
    """Remove floor(rate * size) channels of the full group (counted against the full width, so rate 0.5
    halves every group), the lowest-scoring among the channels still kept; at least `min_channels` stay."""
    target = size - prune_count(size, rate)
    target = max(min(target, len(kept)), min(min_channels, len(kept)))
    chosen = keep_top(scores[list(kept)].double(), target)
    return sorted(kept[i] for i in chosen)


class OneShotPruning(PruneOnceMethod):
    """Score every prunable group's channels once and keep the best ones (module docstring)."""

    Params = OneShotParams
    # per-channel scores of one group (higher = keep), or None when the group cannot be scored
    score: Callable[[nn.Module, ChannelGroup], torch.Tensor | None]

    def __init__(self, params: OneShotParams) -> None:
        super().__init__()
        self.params = params
        self.channel_policy = params.policy
        self.rounding = PlanRounding(params.round_to, params.min_channels)

    def uniform_plan(self, ctx: TrainContext, scores: dict[str, torch.Tensor], rate: float) -> ChannelPlan:
        assert ctx.groups is not None
        plan = ctx.plan or ChannelPlan()
        keep = dict(plan.keep)
        for group in ctx.groups:
            if group.name in scores:
                keep[group.name] = uniform_keep(scores[group.name], plan.kept(group), rate, group.size,
                                                self.params.min_channels)
        return ChannelPlan(keep)

    def make_plan(self, ctx: TrainContext) -> tuple[ChannelPlan, dict[str, Any]]:
        assert ctx.groups is not None and ctx.supernet is not None
        model = masked_copy(ctx.supernet, ctx.plan, ctx.groups)  # removed channels must not add to the scores
        scores = {}
        for group in ctx.groups:
            score = self.score(model, group)
            if score is not None:
                scores[group.name] = score
        if not scores:
            raise UserError(f"{self.name}: no prunable channel group can be scored")
        scored = [g for g in ctx.groups if g.name in scores]
        if self.params.rate is not None:
            plan, info = self.rounding.round_once(ctx, self.uniform_plan(ctx, scores, self.params.rate), scored,
                                                  scores)
            return plan, {"rate": self.params.rate, **info}
        budget = MacsBudget(self.params.target_macs_ratio, count_macs(ctx.supernet, ctx.example_inputs[:1]))
        estimate = macs_estimator(ctx.supernet, ctx.groups, ctx.example_inputs)
        rates = rate_steps([g.size for g in scored])
        rate = budget.search(rates, lambda r: estimate(
            self.rounding.priced(self.uniform_plan(ctx, scores, r), scored, scores))).value
        plan, info = self.rounding.round_once(ctx, self.uniform_plan(ctx, scores, rate), scored, scores)
        macs = plan_macs(ctx.supernet, plan, ctx.groups, ctx.example_inputs)  # measured, not estimated
        return plan, {"rate": rate, **info, **budget.outcome(macs)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.rounding.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rounding.load_state_dict(state)


@METHODS.register("l1_filter")
class L1FilterPruning(OneShotPruning):
    """One-shot L1-norm filter pruning (Li et al. 2017)."""

    name = "l1_filter"
    summary = "once, remove the filters with the smallest L1 norms, at a uniform rate or a MACs target"
    paper = "Li et al., Pruning Filters for Efficient ConvNets, ICLR 2017"
    score = staticmethod(l1_group_scores)


@METHODS.register("bn_scale")
class BNScalePruning(OneShotPruning):
    """One-shot BN-scale (|gamma|) pruning."""

    name = "bn_scale"
    summary = "once, remove the channels with the smallest |gamma| (Slimming's criterion, no L1 training)"
    paper = "Liu et al., ICCV 2017 (Network Slimming's criterion)"

    @staticmethod
    def score(model: nn.Module, group: ChannelGroup) -> torch.Tensor | None:
        return group_gammas(model, group, None)
