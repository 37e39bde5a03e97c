"""HRank (Lin et al., CVPR 2020): prune the filters whose feature maps have the lowest average rank.

After `prune_epoch` epochs, the average matrix rank of every channel's feature map (after ReLU) is estimated on
`rank_batches` training batches (`criteria.collect_feature_map_ranks`, eval mode, no gradient), and in each
prunable group the floor(rate * width) lowest-rank channels go (`criteria.hrank_keep`; at least
`min_channels` stay). Training then continues on the subnet.

Differences from the official code (research note classic_methods.md §3.1), all deliberate:
- one decision for all layers at once, not layer by layer with a fine-tuning round after each layer;
- channels are removed physically (the official code only zeroes them);
- the batches come from `ctx.train_batches()`, i.e. without augmentation (the official code used augmented
  training batches);
- the hooked feature map is ReLU(output of the group's BN after its first producer), or ReLU(output of the
  producer) without a BN: exactly the map the filter produces for a single-writer group. A residual stream
  (several writers) is one channel group here, so its channels go together; a channel's rank is the mean of
  its ranks in ReLU(BN) after each writer. The official code ranks each block's conv2 on the block output
  (ReLU after the add) and masks each conv on its own, which leaves the residual add inconsistent.

Layer set: policy "all" by default, as the official lmbxmu/HRank prunes every conv of ResNet-56 (`main.py`
loops over all 55; `mask.py` masks each conv and its BN, conv2 included). `policy: internal` keeps the
residual streams whole (prunekit's earlier default, REPrune's and Slimming's ResNet rule).

`rates`: one uniform rate, a list with one rate per prunable group (in `ctx.groups` order, i.e. module order),
or a mapping {group name: rate} (groups not named keep all their channels).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from prunekit.channels import ChannelGroup, ChannelPlan
from prunekit.criteria import collect_feature_map_ranks, hrank_keep, prune_count
from prunekit.criteria.hrank import DEFAULT_RANK_BATCHES
from prunekit.errors import UserError
from prunekit.methods import METHODS
from prunekit.methods.base import TrainContext
from prunekit.methods.params import MIN_CHANNELS_HELP, POLICY_HELP, ChannelParams, check_rate, param
from prunekit.methods.prune_once import PruneOnceMethod


@dataclasses.dataclass
class HRankParams(ChannelParams):
    """method.params of `hrank`."""

    prune_epoch: int = param(-1, "required: epochs trained before the ranks are measured (0: at initialisation)")
    rates: float | list[float] | dict[str, float] = param(
        0.5, "fraction of each group's filters to remove: one rate, one per group in module order, or "
             "{group name: rate} (groups not named keep all their channels)")
    rank_batches: int = param(DEFAULT_RANK_BATCHES, "training batches the ranks are averaged over (official "
                                                    "--limit: 5)")
    policy: Literal["internal", "all"] = param("all", f"{POLICY_HELP}. Default all: the official HRank "
                                                      "prunes every conv of ResNet-56, block outputs included")
    min_channels: int = param(1, MIN_CHANNELS_HELP)

    def __post_init__(self) -> None:
        self.check_channel_params()
        values = (self.rates.values() if isinstance(self.rates, dict)
                  else self.rates if isinstance(self.rates, list) else [self.rates])
        for rate in values:
            if not isinstance(rate, int | float) or isinstance(rate, bool):
                raise UserError(f"method.params.rates must hold numbers in [0, 1], got {rate!r}")
            check_rate(float(rate), "rates")
        if self.rank_batches < 1:
            raise UserError(f"method.params.rank_batches must be >= 1, got {self.rank_batches}")


def rates_per_group(rates: float | list[float] | dict[str, float], groups: list[ChannelGroup]) -> dict[str, float]:
    """{group name: pruning rate} from one rate, a list in group order, or a mapping by group name."""
    if isinstance(rates, dict):
        names = {g.name for g in groups}
        unknown = sorted(set(rates) - names)
        if unknown:
            raise UserError(f"hrank: method.params.rates names {unknown[0]!r}, which is not a prunable channel "
                            f"group; groups: {', '.join(g.name for g in groups)}")
        return {name: float(rate) for name, rate in rates.items()}
    if isinstance(rates, list):
        if len(rates) != len(groups):
            raise UserError(f"hrank: method.params.rates lists {len(rates)} rates but the model has {len(groups)} "
                            f"prunable channel groups: {', '.join(g.name for g in groups)}")
        return {g.name: float(rate) for g, rate in zip(groups, rates, strict=True)}
    return {g.name: float(rates) for g in groups}


def hooked_modules(group: ChannelGroup, model: nn.Module) -> list[str]:
    """The modules whose ReLU'd outputs are the group's feature maps: its BN, else its first producer; for a
    residual stream (several writers) every BatchNorm on it (one after each writer), whose ranks are averaged."""
    first = group.bn if group.bn is not None else group.producers[0]
    if group.internal:
        return [first]
    norms = [n for n in group.norm_layers if isinstance(model.get_submodule(n), _BatchNorm)]
    return norms or [first]


@METHODS.register("hrank")
class HRank(PruneOnceMethod):
    """HRank, one pruning decision (module docstring)."""

    name = "hrank"
    summary = "once, remove the filters whose feature maps have the lowest average rank"
    paper = "Lin et al., HRank: Filter Pruning using High-Rank Feature Map, CVPR 2020"
    Params = HRankParams

    def __init__(self, params: HRankParams) -> None:
        super().__init__()
        self.params = params
        self.channel_policy = params.policy

    def on_train_start(self, ctx: TrainContext) -> Any:
        if ctx.groups is not None:
            rates_per_group(self.params.rates, ctx.groups)  # report a bad rate list before training
        return super().on_train_start(ctx)

    def make_plan(self, ctx: TrainContext) -> tuple[ChannelPlan, dict[str, Any]]:
        assert ctx.groups is not None
        if ctx.train_batches is None:
            raise RuntimeError("hrank needs ctx.train_batches to measure feature-map ranks")
        rates = rates_per_group(self.params.rates, ctx.groups)
        chosen = [g for g in ctx.groups if rates.get(g.name, 0.0) > 0]
        hooked = {g.name: hooked_modules(g, ctx.model) for g in chosen}
        modules = sorted({m for names in hooked.values() for m in names})
        # ctx.model is the network being trained: its group channels are the kept ones, in increasing order.
        try:
            ranks = collect_feature_map_ranks(ctx.model, modules, ctx.train_batches(), self.params.rank_batches)
        except ValueError as exc:  # a model or data the rank estimate cannot use
            raise UserError(str(exc)) from exc
        plan = ctx.plan or ChannelPlan()
        keep = dict(plan.keep)
        mean_ranks = {}
        for group in chosen:
            kept = plan.kept(group)
            group_ranks = torch.stack([ranks[m] for m in hooked[group.name]]).mean(dim=0)
            # floor(rate * full width) filters go; counted against the full width when some are already gone
            n_prune = prune_count(group.size, rates[group.name]) - (group.size - len(kept))
            n_prune = min(len(kept), max(0, n_prune))
            keep[group.name] = [kept[i] for i in hrank_keep(group_ranks, n_prune, self.params.min_channels)]
            mean_ranks[group.name] = round(float(group_ranks.mean()), 3)
        return ChannelPlan(keep), {"mean_rank": mean_ranks, "rank_batches": self.params.rank_batches}
