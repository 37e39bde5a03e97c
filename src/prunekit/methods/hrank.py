"""HRank (Lin et al., CVPR 2020): prune the filters whose feature maps have the lowest average rank.

The average matrix rank of a channel's feature map (after ReLU) is estimated on `rank_batches` training batches
(`criteria.collect_feature_map_ranks`, eval mode, no gradient), and in a prunable group the floor(rate * width)
lowest-rank channels go (`criteria.hrank_keep`; at least `min_channels` stay). Two schedules:

- `layerwise` (default, the official procedure: `main.py` prunes one conv, fine-tunes, goes on to the next):
  after `prune_epoch` epochs the first `groups_per_decision` groups with a rate > 0 (network order, i.e.
  `ctx.groups` order) are pruned, then the next ones every `interval` epochs, each decision ranking only its own
  groups on the network as it is then (already pruned, fine-tuned meanwhile); training continues throughout.
  The k-th decision (from 0) is taken after epoch prune_epoch + k * interval (counted from 1; k = 0 with
  prune_epoch 0: before training), so the whole schedule must end within train.epochs.
- `oneshot`: one decision for every group after `prune_epoch` epochs (prunekit's earlier behaviour).

Differences from the official code (research note classic_methods.md §3.1), all deliberate:
- the official code ranks every layer once, on the pre-trained network (`rank_generation.py`), then prunes
  layer by layer with those ranks; `layerwise` recomputes each group's ranks on the current network by default
  (`ranks: current`: here the network trains between decisions, so ranks from the first decision grow stale),
  and `ranks: once` ranks every group at the first decision and reuses those ranks (kept in the checkpoint);
- the official fine-tuning round per layer is a fixed number of epochs of its own (its own LR schedule); here
  it is `interval` epochs of the run's one schedule;
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

`rates_per_conv`: the official form (README `--compress_rate`, research note §3.2), one rate per conv in module
order (convs whose names match a `skip_convs` pattern have no entry), or {conv name: rate}. The official mask.py
removes int(rate * F) of a conv's F filters; here a channel group takes a rate derived from the convs that write
it (`group_rates_from_convs`):
- a group with one listed writer (a block's conv1, a VGG conv) takes that conv's rate, exactly as mask.py;
- a residual stream has several writers (stem or projection conv and every block's conv2) and takes
  `stream_rate` of their rates, `min` by default. Why min: the official network masks each writer on its own
  and the identity shortcut carries a stream channel past every writer that did not mask it, so a channel is
  zero in the stream only where ALL its writers masked it; the fraction of the stream the official network really
  removes is at most the smallest writer rate. min is the largest single rate that removes no more than that;
  `first` (the first writer's rate), `mean` and `max` are there to compare;
- a group no listed conv writes (a hidden Linear's, or one whose writers are all skipped) keeps every channel.
A listed conv whose group is not prunable under `policy` has its rate unused (named in the decision info).

`round_to` (`methods.widths`) rounds the groups of each decision after the ranks chose their channels: an integer
rounds kept counts up to its multiples (the next-highest-rank channels come back), "hardware" moves each count to
a fast width of this device within the MACs of the unrounded plan. Like the cut itself, the rounding only shrinks:
it never brings back a channel an earlier decision removed, nor keeps more than the group had.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from prunekit.channels import ChannelGroup, ChannelPlan
from prunekit.channels.widths import check_round_to
from prunekit.criteria import collect_feature_map_ranks, hrank_keep, prune_count
from prunekit.criteria.hrank import DEFAULT_RANK_BATCHES
from prunekit.errors import UserError
from prunekit.methods import METHODS
from prunekit.methods.base import Decision, TrainContext
from prunekit.methods.params import (
    MIN_CHANNELS_HELP,
    POLICY_HELP,
    ChannelParams,
    check_prune_epoch,
    check_rate,
    param,
)
from prunekit.methods.prune_once import PruneOnceMethod
from prunekit.methods.widths import ROUND_TO_HELP, PlanRounding, only_within


@dataclasses.dataclass
class HRankParams(ChannelParams):
    """method.params of `hrank`."""

    prune_epoch: int = param(-1, "required: epochs trained before the ranks are measured (0: at initialisation)")
    rates: float | list[float] | dict[str, float] | None = param(
        None, "fraction of each group's filters to remove: one rate, one per group in module order, or "
              "{group name: rate} (groups not named keep all their channels); None: 0.5, unless rates_per_conv "
              "is given")
    rates_per_conv: list[float] | dict[str, float] | None = param(
        None, "HRank's official per-conv form instead of rates: one rate per conv in module order (convs matching "
              "skip_convs have no entry), or {conv name: rate}; a group takes its writer conv's rate, a residual "
              "stream stream_rate of its writers' rates")
    skip_convs: list[str] = param(help="rates_per_conv as a list: fnmatch patterns of the conv names it has no "
                                       "entry for (e.g. '*.shortcut.0': the projection shortcuts of prunekit's "
                                       "option-B ResNets, which the official option-A network does not have)",
                                  factory=list)
    stream_rate: Literal["min", "first", "mean", "max"] = param(
        "min", "rates_per_conv: the rate of a group with several writer convs (a residual stream), from theirs. "
               "min (default): the official masks remove a stream channel only where every writer masks it")
    rank_batches: int = param(DEFAULT_RANK_BATCHES, "training batches the ranks are averaged over (official "
                                                    "--limit: 5)")
    policy: Literal["internal", "all"] = param("all", f"{POLICY_HELP}. Default all: the official HRank "
                                                      "prunes every conv of ResNet-56, block outputs included")
    min_channels: int = param(1, MIN_CHANNELS_HELP)
    round_to: int | Literal["hardware"] = param(1, f"{ROUND_TO_HELP}. Applied to each decision's groups; channels "
                                                   "added back are the next-highest-rank ones of those the group "
                                                   "still had")
    schedule: Literal["layerwise", "oneshot"] = param(
        "layerwise", "layerwise: prune groups_per_decision groups (network order) per decision, every interval "
                     "epochs from prune_epoch, as the official code prunes layer by layer with fine-tuning in "
                     "between (the default, for that reason); oneshot: every group in one decision")
    interval: int = param(1, "layerwise: epochs of training between two decisions")
    groups_per_decision: int = param(1, "layerwise: channel groups pruned at each decision (1: one layer at a "
                                        "time, as the official code)")
    ranks: Literal["current", "once"] = param(
        "current", "layerwise: current ranks each decision's groups on the network as it is then (default: the "
                   "network has trained since the first decision); once ranks every group at the first decision "
                   "and reuses those ranks, as the official code ranks the pre-trained network once")

    def __post_init__(self) -> None:
        self.check_channel_params()
        if self.schedule not in ("layerwise", "oneshot"):
            raise UserError(f"method.params.schedule must be layerwise or oneshot, got {self.schedule!r}")
        if self.interval < 1:
            raise UserError(f"method.params.interval must be >= 1, got {self.interval}")
        if self.ranks not in ("current", "once"):
            raise UserError(f"method.params.ranks must be current or once, got {self.ranks!r}")
        if self.groups_per_decision < 1:
            raise UserError(f"method.params.groups_per_decision must be >= 1, got {self.groups_per_decision}")
        if self.rates is not None and self.rates_per_conv is not None:
            raise UserError("method.params: give rates or rates_per_conv, not both")
        if self.stream_rate not in STREAM_RULES:
            raise UserError(f"method.params.stream_rate must be one of {', '.join(STREAM_RULES)}, "
                            f"got {self.stream_rate!r}")
        if self.skip_convs and not isinstance(self.rates_per_conv, list):
            raise UserError("method.params.skip_convs applies to a rates_per_conv list only")
        if self.rates_per_conv is None:
            self.rates = 0.5 if self.rates is None else self.rates
            check_rates(self.rates, "rates")
        else:
            check_rates(self.rates_per_conv, "rates_per_conv")
        if self.rank_batches < 1:
            raise UserError(f"method.params.rank_batches must be >= 1, got {self.rank_batches}")
        check_round_to(self.round_to)


STREAM_RULES: dict[str, Callable[[list[float]], float]] = {
    "min": min,
    "first": lambda rates: rates[0],
    "mean": lambda rates: sum(rates) / len(rates),
    "max": max,
}


def check_rates(rates: float | list[float] | dict[str, float], key: str) -> None:
    """UserError unless every rate is a number in [0, 1]."""
    values = rates.values() if isinstance(rates, dict) else rates if isinstance(rates, list) else [rates]
    for rate in values:
        if not isinstance(rate, int | float) or isinstance(rate, bool):
            raise UserError(f"method.params.{key} must hold numbers in [0, 1], got {rate!r}")
        check_rate(float(rate), key)


def listed_convs(model: nn.Module, skip: list[str]) -> list[str]:
    """The conv module names a per-conv rate list covers: every conv in named_modules order, less those whose
    name matches a `skip` pattern (fnmatch, case-sensitive)."""
    return [name for name, module in model.named_modules()
            if isinstance(module, _ConvNd) and not any(fnmatchcase(name, pattern) for pattern in skip)]


def conv_rates(per_conv: list[float] | dict[str, float], model: nn.Module, skip: list[str]) -> dict[str, float]:
    """{conv name: rate} from a per-conv list (the `listed_convs` in order) or a mapping by conv name."""
    if isinstance(per_conv, dict):
        convs = set(listed_convs(model, []))
        unknown = sorted(set(per_conv) - convs)
        if unknown:
            raise UserError(f"hrank: method.params.rates_per_conv names {unknown[0]!r}, which is not a conv of "
                            f"the model")
        return {name: float(rate) for name, rate in per_conv.items()}
    names = listed_convs(model, skip)
    if len(per_conv) != len(names):
        skipped = f" (after skip_convs {skip})" if skip else ""
        raise UserError(f"hrank: method.params.rates_per_conv lists {len(per_conv)} rates but the model has "
                        f"{len(names)} convs{skipped}, from {names[0] if names else '-'} to "
                        f"{names[-1] if names else '-'}")
    return {name: float(rate) for name, rate in zip(names, per_conv, strict=True)}


def group_rates_from_convs(rates: dict[str, float], groups: list[ChannelGroup], rule: str) -> dict[str, float]:
    """{group name: rate}: the rate of a group's one listed writer conv, `STREAM_RULES[rule]` of its writers'
    rates (module order) when it has several, 0 when it has none (module docstring)."""
    result = {}
    for group in groups:
        members = [rates[name] for name in group.producers if name in rates]  # producers come in module order
        result[group.name] = STREAM_RULES[rule](members) if members else 0.0
    return result


def unused_convs(rates: dict[str, float], groups: list[ChannelGroup]) -> list[str]:
    """The listed convs with a rate > 0 that write no prunable group (their rate has no effect)."""
    writers = {name for group in groups for name in group.producers}
    return [name for name, rate in rates.items() if rate > 0 and name not in writers]


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


def scatter_full(ranks: torch.Tensor, group: ChannelGroup, plan: ChannelPlan) -> torch.Tensor:
    """Ranks of the kept channels as a full-width vector (removed channels: +inf, never chosen again)."""
    full = torch.full((group.size,), float("inf"))
    full[plan.kept(group)] = ranks.float().cpu()
    return full


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
    """HRank, layer by layer or in one decision (module docstring)."""

    name = "hrank"
    summary = "remove the filters whose feature maps have the lowest average rank, layer by layer (or at once)"
    paper = "Lin et al., HRank: Filter Pruning using High-Rank Feature Map, CVPR 2020"
    Params = HRankParams

    def __init__(self, params: HRankParams) -> None:
        super().__init__()
        self.params = params
        self.channel_policy = params.policy
        self.decisions_done = 0  # layerwise: decisions taken so far
        self.stored_ranks: dict[str, torch.Tensor] = {}  # ranks: once, {group name: (full width,) ranks}
        self.rounding = PlanRounding(params.round_to, params.min_channels)

    def group_rates(self, ctx: TrainContext) -> dict[str, float]:
        """{group name: rate} from `rates`, or from `rates_per_conv` through the convs that write each group."""
        assert ctx.groups is not None
        if self.params.rates_per_conv is None:
            assert self.params.rates is not None  # set to its default in HRankParams.__post_init__
            return rates_per_group(self.params.rates, ctx.groups)
        model = ctx.supernet if ctx.supernet is not None else ctx.model
        by_conv = conv_rates(self.params.rates_per_conv, model, self.params.skip_convs)
        return group_rates_from_convs(by_conv, ctx.groups, self.params.stream_rate)

    def batches_of_groups(self, groups: list[ChannelGroup], rates: dict[str, float]) -> list[list[ChannelGroup]]:
        """The groups each decision prunes: every group with a rate > 0, in network order, in runs of
        groups_per_decision (layerwise), or all of them at once (oneshot)."""
        chosen = [g for g in groups if rates.get(g.name, 0.0) > 0]
        if self.params.schedule == "oneshot":
            return [chosen]
        size = self.params.groups_per_decision
        return [chosen[i:i + size] for i in range(0, len(chosen), size)]

    def decision_epoch(self, k: int) -> int:
        """Epochs trained before decision k (from 0) is taken."""
        return self.params.prune_epoch + k * self.params.interval

    def on_train_start(self, ctx: TrainContext) -> Any:
        if ctx.groups is None:
            return super().on_train_start(ctx)
        check_prune_epoch(self.params.prune_epoch, ctx.epochs, self.name)
        batches = self.batches_of_groups(ctx.groups, self.group_rates(ctx))  # a bad rate list: before training
        last = self.decision_epoch(max(0, len(batches) - 1))
        if last > ctx.epochs:
            raise UserError(f"hrank: the layerwise schedule prunes {len(batches)} times, every {self.params.interval} "
                            f"epochs from prune_epoch {self.params.prune_epoch}: its last decision (after epoch "
                            f"{last}) lies beyond train.epochs = {ctx.epochs}")
        if self.params.prune_epoch == 0 and self.decisions_done == 0:
            return self._decide_next(ctx)
        return None

    def on_epoch_end(self, epoch: int, ctx: TrainContext) -> Decision | None:
        if ctx.groups is None:
            return super().on_epoch_end(epoch, ctx)
        k = self.decisions_done
        if k >= len(self.batches_of_groups(ctx.groups, self.group_rates(ctx))) or epoch + 1 != self.decision_epoch(k):
            return None
        return self._decide_next(ctx)

    def _decide_next(self, ctx: TrainContext) -> Decision:
        assert ctx.groups is not None
        batches = self.batches_of_groups(ctx.groups, self.group_rates(ctx))
        decision = self._decide(ctx)  # make_plan cuts batches[decisions_done]
        decision.info.update({"decision": self.decisions_done, "decisions": len(batches),
                              "groups": [g.name for g in batches[self.decisions_done]]})
        self.decisions_done += 1
        self.pruned = self.decisions_done >= len(batches)
        return decision

    def make_plan(self, ctx: TrainContext) -> tuple[ChannelPlan, dict[str, Any]]:
        assert ctx.groups is not None
        if ctx.train_batches is None:
            raise RuntimeError("hrank needs ctx.train_batches to measure feature-map ranks")
        rates = self.group_rates(ctx)
        batches = self.batches_of_groups(ctx.groups, rates)
        chosen = batches[self.decisions_done]  # the groups of this decision
        plan = ctx.plan or ChannelPlan()
        once = self.params.ranks == "once" and self.params.schedule == "layerwise"
        if once and not self.stored_ranks:  # the first decision ranks every group it will ever cut
            everything = [g for batch in batches for g in batch]
            first = self.measure(ctx, everything)
            self.stored_ranks = {g.name: scatter_full(first[g.name], g, plan) for g in everything}
        measured = ({g.name: self.stored_ranks[g.name][plan.kept(g)] for g in chosen} if once
                    else self.measure(ctx, chosen))
        keep = dict(plan.keep)
        mean_ranks, full_ranks = {}, {}
        for group in chosen:
            kept = plan.kept(group)
            group_ranks = measured[group.name]
            # floor(rate * full width) filters go; counted against the full width when some are already gone
            n_prune = prune_count(group.size, rates[group.name]) - (group.size - len(kept))
            n_prune = min(len(kept), max(0, n_prune))
            keep[group.name] = [kept[i] for i in hrank_keep(group_ranks, n_prune, self.params.min_channels)]
            mean_ranks[group.name] = round(float(group_ranks.mean()), 3)
            full_ranks[group.name] = only_within(scatter_full(group_ranks, group, plan), kept)
        caps = {g.name: len(plan.kept(g)) for g in chosen}  # the rounding only shrinks, as the cut
        new_plan, rounding_info = self.rounding.round_once(ctx, ChannelPlan(keep), chosen, full_ranks, caps)
        info: dict[str, Any] = {"mean_rank": mean_ranks, "rank_batches": self.params.rank_batches,
                                "rates": {g.name: rates[g.name] for g in chosen}, **rounding_info}
        if self.params.rates_per_conv is not None and self.decisions_done == 0:
            model = ctx.supernet if ctx.supernet is not None else ctx.model
            by_conv = conv_rates(self.params.rates_per_conv, model, self.params.skip_convs)
            info["unused_conv_rates"] = unused_convs(by_conv, ctx.groups)
        return new_plan, info

    def measure(self, ctx: TrainContext, groups: list[ChannelGroup]) -> dict[str, torch.Tensor]:
        """{group name: rank of each channel the trained model has (kept channels, increasing order)}."""
        assert ctx.train_batches is not None
        hooked = {g.name: hooked_modules(g, ctx.model) for g in groups}
        modules = sorted({m for names in hooked.values() for m in names})
        # ctx.model is the network being trained: its group channels are the kept ones, in increasing order.
        try:
            ranks = collect_feature_map_ranks(ctx.model, modules, ctx.train_batches(), self.params.rank_batches)
        except ValueError as exc:  # a model or data the rank estimate cannot use
            raise UserError(str(exc)) from exc
        return {g.name: torch.stack([ranks[m] for m in hooked[g.name]]).mean(dim=0) for g in groups}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"ranks.{name}": ranks for name, ranks in self.stored_ranks.items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.stored_ranks = {key.removeprefix("ranks."): value.clone() for key, value in tensors.items()
                             if key.startswith("ranks.")}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "decisions_done": self.decisions_done, **self.rounding.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rounding.load_state_dict(state)
        self.decisions_done = int(state.get("decisions_done", 1 if self.pruned else 0))
