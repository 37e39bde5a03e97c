"""Channel-level DST: dynamic sparsity turned into physical speed (after Yin et al., "Dynamic Sparsity Is
Channel-Level Sparsity Learner", NeurIPS 2023, "Chase").

Unstructured RigL (or SET) runs as in `rigl`; in addition, every `channel_every` epochs until
`channel_end_fraction` of training, each prunable group (policy "internal": a block's inner channels; residual
streams keep their width) loses the `channel_rate` fraction of its full width with the smallest *unmasked mean
magnitude*, UMM_c = sum |w_c (.) m_c| / numel(w_c) over the filter that writes channel c (masked weights are
exactly 0, so this is the filter's mean |w|: a channel the DST updates have emptied scores low), until
`channel_target` of the group is gone. The channels go through a channel plan, so the network that trains
becomes physically narrower while unstructured DST goes on inside the kept channels.

Approximations (said plainly): Chase's UMM threshold schedule and its redistribution of the removed channels'
nonzeros to other layers are not replicated: here a fixed fraction goes per decision and the removed channels'
nonzeros are not regrown elsewhere (the run ends with fewer nonzeros than `sparsity` asks; `weight_density` in
summary.json counts the full-width masks, the update records count the trained subnet's).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import torch

from prunekit.channels import ChannelPlan, kept_indices
from prunekit.channels.readers import group_filters
from prunekit.channels.surgery import scatter_, select
from prunekit.channels.widths import check_round_to
from prunekit.errors import UserError
from prunekit.methods import METHODS
from prunekit.methods.base import Decision, TrainContext
from prunekit.methods.dst_base import DSTParams, DynamicSparseMethod
from prunekit.methods.params import MIN_CHANNELS_HELP, PREFIX, param
from prunekit.methods.widths import ROUND_TO_HELP, PlanRounding, only_within


@dataclasses.dataclass
class ChannelDSTParams(DSTParams):
    """method.params of `channel_dst`: RigL's, plus the channel-removal schedule."""

    channel_every: int = param(2, "epochs between channel removals")
    channel_rate: float = param(0.1, "fraction of each group's full width removed per decision (lowest UMM)")
    channel_target: float = param(0.5, "at most this fraction of each group's channels is removed in all")
    channel_end_fraction: float = param(0.75, "no channel is removed after this fraction of the training steps")
    min_channels: int = param(1, MIN_CHANNELS_HELP)
    round_to: int | Literal["hardware"] = param(1, f"{ROUND_TO_HELP}. Channels added by the rounding are the "
                                                   "just-removed ones with the largest UMM (never one removed "
                                                   "at an earlier decision); hardware rounding may also remove "
                                                   "more, lowest UMM first")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_round_to(self.round_to, f"{PREFIX}round_to")
        if self.channel_every < 1:
            raise UserError(f"{PREFIX}channel_every must be >= 1, got {self.channel_every}")
        for key in ("channel_rate", "channel_target", "channel_end_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise UserError(f"{PREFIX}{key} must lie in [0, 1], got {getattr(self, key)}")
        if self.min_channels < 1:
            raise UserError(f"{PREFIX}min_channels must be >= 1, got {self.min_channels}")


def unmasked_mean_magnitude(filters: torch.Tensor) -> torch.Tensor:
    """UMM per channel: the mean |w| of each row of a (channels, ...) filter tensor whose masked entries are 0."""
    return filters.abs().reshape(filters.shape[0], -1).mean(1)


def channels_to_keep(scores: torch.Tensor, kept: list[int], size: int, rate: float, target: float,
                     min_channels: int) -> list[int]:
    """Remove floor(rate * size) of the kept channels with the lowest score (ties: lower index first), never
    more than floor(target * size) in all, never below `min_channels`."""
    floor_kept = max(size - math.floor(target * size), min(min_channels, size))
    remove = max(0, min(math.floor(rate * size), len(kept) - floor_kept))
    order = torch.sort(scores[kept].double(), stable=True).indices.tolist()
    gone = {kept[i] for i in order[:remove]}
    return [c for c in kept if c not in gone]


@METHODS.register("channel_dst")
class ChannelDST(DynamicSparseMethod):
    """RigL inside the kept channels; the emptiest channels leave through a channel plan."""

    name = "channel_dst"
    summary = ('RigL inside the kept channels; the emptiest channels (lowest unmasked mean magnitude) '
               'leave through a channel plan')
    paper = ('after Yin et al., "Dynamic Sparsity Is Channel-Level Sparsity Learner", NeurIPS 2023 '
             '(Chase); approximated')
    channel_policy = "internal"
    Params = ChannelDSTParams
    params: ChannelDSTParams
    _kept_for: ChannelPlan | None = None
    _kept: dict = {}  # noqa: RUF012 (replaced per instance)

    def on_epoch_end(self, epoch: int, ctx: TrainContext) -> Decision | None:
        p = self.params
        done = (epoch + 1) * ctx.steps_per_epoch
        if (epoch + 1) % p.channel_every or done > p.channel_end_fraction * ctx.steps_per_epoch * ctx.epochs:
            return None
        plan = ctx.plan or ChannelPlan()
        keep: dict[str, list[int]] = {}
        scores: dict[str, torch.Tensor] = {}
        for group in ctx.groups or []:
            filters = group_filters(ctx.supernet, group, ctx.plan, ctx.groups)
            if filters is None:
                continue
            kept = plan.kept(group)
            umm = unmasked_mean_magnitude(filters)
            keep[group.name] = channels_to_keep(umm, kept, group.size, p.channel_rate, p.channel_target,
                                                p.min_channels)
            scores[group.name] = only_within(umm, kept)
        rounded, rounding_info = self.rounding.round_once(
            ctx, ChannelPlan(keep), [g for g in ctx.groups or [] if g.name in keep], scores,
            caps={g.name: len(plan.kept(g)) for g in ctx.groups or []})  # channels only leave
        new = ChannelPlan({**plan.keep, **rounded.keep})
        removed = {g.name: len(plan.kept(g)) - len(new.kept(g)) for g in ctx.groups or []}
        if not any(removed.values()):
            return None
        return Decision(plan=new, info={"removed": {k: v for k, v in removed.items() if v}, **rounding_info})

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.rounding.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rounding.load_state_dict(state)

    @property
    def rounding(self) -> PlanRounding:
        """round_to's rounding, made on first use (DynamicSparseMethod owns __init__)."""
        if "_rounding" not in vars(self):
            self._rounding = PlanRounding(self.params.round_to, self.params.min_channels)
        return self._rounding

    def _ever_active_with(self, name: str, mask: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """Write the subnet's mask into the full-width ever-active record at the kept positions."""
        if ctx.plan is None:
            return super()._ever_active_with(name, mask, ctx)
        module, _, tensor = name.rpartition(".")
        if self._kept_for is not ctx.plan:
            self._kept, self._kept_for = kept_indices(ctx.supernet, list(ctx.groups or []), ctx.plan), ctx.plan
        dims = self._kept.get((module, tensor), {})
        full = self.ever_active[name].clone()
        scatter_(full, select(full, dims) | mask.cpu(), dims)
        return full
