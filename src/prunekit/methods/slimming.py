"""Network Slimming (Liu et al., ICCV 2017): L1 on BN scales, one global percentile cut, then train on.

1. Sparsity training (paper Eq. 1): after every backward pass, s * sign(gamma) is added to the gradient of the
   BN scales of the population (every BN by default) (`criteria.bn_l1_subgradient_`, the official `updateBN`);
   s = 1e-4 (VGG), 1e-5 for ResNets and DenseNets (official commands).
2. After `prune_epoch` epochs: |gamma| of the population's channels is sorted globally and the smallest
   `percentile` of them go if they are on a prunable group (`criteria.slimming_keep`); a group never keeps
   fewer than `min_channels`. The L1 term stops there, as in the official fine-tuning run (`main.py --refine`
   without `-sr`).
3. Training continues on the physically smaller subnet (our "fine-tune" is the rest of the same schedule).

Which channels: the groups of the channel policy, "internal" by default. That is the official ResNet rule (the
residual stream keeps its width, only channels inside branches go). `population: all_bn` (default): the L1 term
covers every affine BN of the model and the percentile counts all their channels, as the official code (it
regularises and sorts every BN); channels of BNs outside the prunable groups count in the cut but are never
removed. `population: groups`: only the BNs of the prunable groups (prunekit's earlier behaviour). Groups
without a BatchNorm are left out (kept whole). With policy "all", a residual-stream channel's
score is the largest |gamma| over the BNs on the stream (`channels.readers.group_gammas`).
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Literal

import torch
from torch import nn

from prunekit.channels import ChannelPlan
from prunekit.channels.readers import group_gammas
from prunekit.channels.widths import check_round_to
from prunekit.criteria import bn_layers, l1_subgradient_, slimming_keep, slimming_threshold
from prunekit.errors import UserError
from prunekit.methods import METHODS
from prunekit.methods.base import Decision, TrainContext
from prunekit.methods.params import MIN_CHANNELS_HELP, POLICY_HELP, ChannelParams, param
from prunekit.methods.prune_once import PruneOnceMethod
from prunekit.methods.widths import ROUND_TO_HELP, PlanRounding


@dataclasses.dataclass
class SlimmingParams(ChannelParams):
    """method.params of `slimming`."""

    prune_epoch: int = param(-1, "required: epochs of sparsity training before the cut (0: cut at initialisation)")
    percentile: float = param(0.5, "fraction of the prunable channels to remove in one global |gamma| cut, "
                                   "in [0, 1)")
    s: float = param(1e-4, "L1 strength on the BN scales (official: 1e-4 for VGG, 1e-5 for ResNets)")
    policy: Literal["internal", "all"] = param("internal", POLICY_HELP)
    min_channels: int = param(1, MIN_CHANNELS_HELP)
    population: Literal["all_bn", "groups"] = param(
        "all_bn", "BN scales the L1 term and the percentile cover: all_bn (every affine BN, the official code; "
                  "those outside the prunable groups count in the cut but keep their channels) or groups (only "
                  "the BNs of the prunable groups)")
    round_to: int | Literal["hardware"] = param(1, f"{ROUND_TO_HELP}; channels added or dropped by the rounding "
                                                   "are those with the largest / smallest |gamma|")

    def __post_init__(self) -> None:
        self.check_channel_params()
        if self.population not in ("all_bn", "groups"):
            raise UserError(f"method.params.population must be all_bn or groups, got {self.population!r}")
        if not 0.0 <= self.percentile < 1.0:
            raise UserError(f"method.params.percentile is the fraction of channels to prune, in [0, 1); "
                            f"got {self.percentile}")
        if self.s < 0:
            raise UserError(f"method.params.s must be >= 0, got {self.s}")
        check_round_to(self.round_to)


@METHODS.register("slimming")
class NetworkSlimming(PruneOnceMethod):
    """Network Slimming with one pruning pass (module docstring)."""

    name = "slimming"
    summary = "L1 on the BN scales during training, then one global |gamma| percentile cut"
    paper = "Liu et al., Learning Efficient Convolutional Networks through Network Slimming, ICCV 2017"
    Params = SlimmingParams

    def __init__(self, params: SlimmingParams) -> None:
        super().__init__()
        self.params = params
        self.channel_policy = params.policy
        self.rounding = PlanRounding(params.round_to, params.min_channels)
        self.bn_names: list[str] | None = None
        # The regularised BN scales of the model being trained, found once per model: `on_model_changed` drops
        # them, and until every loop calls that hook they are also keyed by the model's identity.
        self._gammas: list[torch.Tensor] = []
        self._gammas_of: weakref.ref[nn.Module] | None = None

    def on_train_start(self, ctx: TrainContext) -> Decision | None:
        if ctx.groups is None:
            raise RuntimeError("slimming needs ctx.groups (channel groups of the model)")
        group_bns = {name for g in ctx.groups for name in g.norm_layers}
        if not group_bns:
            raise UserError("slimming: no prunable channel group has a BatchNorm; use a model with BN layers")
        if self.params.population == "all_bn":
            self.bn_names = sorted(name for name, _ in bn_layers(ctx.model))
        else:
            self.bn_names = sorted(name for name, _ in bn_layers(ctx.model) if name in group_bns)
        return super().on_train_start(ctx)

    def scales(self, model: nn.Module) -> list[torch.Tensor]:
        """The BN weights (gamma) of `bn_names` in `model`, cached while `model` is the same object."""
        if self.bn_names is None:
            raise RuntimeError("slimming: call on_train_start(ctx) before training")
        if self._gammas_of is None or self._gammas_of() is not model:
            self._gammas = [bn.weight for _, bn in bn_layers(model, self.bn_names)]
            self._gammas_of = weakref.ref(model)
        return self._gammas

    def on_model_changed(self, model: nn.Module) -> None:
        self._gammas, self._gammas_of = [], None

    def after_backward(self, model: nn.Module) -> None:
        if self.pruned or self.params.s == 0:
            return
        l1_subgradient_(self.scales(model), self.params.s)

    def make_plan(self, ctx: TrainContext) -> tuple[ChannelPlan, dict[str, Any]]:
        assert ctx.groups is not None and ctx.supernet is not None
        scored, gammas, kept_lists = [], [], []
        full_scores: dict[str, torch.Tensor] = {}
        plan = ctx.plan or ChannelPlan()
        for group in ctx.groups:
            scores = group_gammas(ctx.supernet, group, ctx.plan)
            if scores is None:
                continue
            kept = plan.kept(group)
            full_scores[group.name] = scores.detach().abs()
            scored.append(group)
            kept_lists.append(kept)
            gammas.append(scores[kept])
        others = self.outside_gammas(ctx) if self.params.population == "all_bn" else []
        population = gammas + others  # the cut counts every BN channel; only the groups' channels can go
        keep = dict(ctx.plan.keep) if ctx.plan is not None else {}
        chosen_lists = slimming_keep(population, self.params.percentile, self.params.min_channels)[:len(scored)]
        for group, kept, chosen in zip(scored, kept_lists, chosen_lists, strict=True):
            keep[group.name] = [kept[i] for i in chosen]
        threshold = slimming_threshold(population, self.params.percentile)
        new_plan, rounding_info = self.rounding.round_once(ctx, ChannelPlan(keep), scored, full_scores)
        return new_plan, {"threshold": threshold, "percentile": self.params.percentile,
                          "scored_groups": len(scored), "population": self.params.population,
                          "population_channels": sum(g.numel() for g in population), **rounding_info}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.rounding.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rounding.load_state_dict(state)

    def outside_gammas(self, ctx: TrainContext) -> list[torch.Tensor]:
        """|gamma| of the affine BNs on no prunable group (in the trained model: full width, never pruned)."""
        assert ctx.groups is not None
        group_bns = {name for g in ctx.groups for name in g.norm_layers}
        return [bn.weight.detach().abs().to("cpu", torch.float64)
                for name, bn in bn_layers(ctx.model) if name not in group_bns]
