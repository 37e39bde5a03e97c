"""Torch-Pruning's own pruner as a one-shot baseline: prune once after `prune_epoch` epochs, then train on.

Torch-Pruning (Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023) ranks the channels of every
dependency group with an importance and removes the lowest ones. This method lets its `BasePruner` (1.6's
MetaPruner) choose, then replays that choice as a prunekit `ChannelPlan`, so the row trains through the same
Trainer, supernet/subnet surgery, data, schedule and ledger as every other method.

- importance `bn_scale`: `tp.importance.BNScaleImportance()`: |gamma| of the group's BatchNorms, averaged over
  them (Network Slimming's criterion; a residual stream averages over all its BNs), normalised by the mean.
- importance `group_norm`: `tp.importance.GroupMagnitudeImportance()` (DepGraph's group L2 norm): the squared
  L2 norms of every coupled slice (producer rows, consumer columns, BN parameters), averaged over the group.

Pruning is local (Torch-Pruning's default, `global_pruning=False`): the same fraction goes from every group, a
group of n channels keeping int(n * (1 - pruning_ratio)) (the importance only picks WHICH channels), as our
one-shot baselines' uniform `rate`. Global pruning is left out: its one threshold over all groups can select a
whole group, which Torch-Pruning then skips entirely (`check_pruning_group`), so MACs do not fall monotonically
with the ratio and no bisection can target them. Only the groups prunekit can represent are offered to
Torch-Pruning: every Conv/Linear that is not a producer of one of `ctx.groups` (the classifier among them) goes into
`ignored_layers`, so Torch-Pruning skips every group that contains it.

How much goes: `pruning_ratio` as given, or `target_macs_ratio`, the fraction of the dense MACs to keep: the
smallest ratio whose plan's MACs (`channels.macs_estimator`, analytic) meet it. The plan only changes where some
int(n * (1 - r)) changes, i.e. at r = 1 - k / n for a group width n, so the search is a bisection
(`budget.MacsBudget`) over the midpoints between consecutive such breakpoints (midpoints: no float
rounding at a breakpoint can change a count), trying each ratio with the pruner's interactive step (the groups it
would prune, read without pruning). Ratios where the narrowest group would keep no channel are left out
(Torch-Pruning would skip that group whole). The chosen ratio is then applied for real on a fresh copy
(`pruner.step()`), and the plan is translated from `pruner.pruning_history()`: one (root layer, is-output,
removed indices) entry per pruned group, in the layer's full-width numbering since everything goes in one step.
The chosen plan's MACs are measured (`channels.plan_macs`).

The decision always starts from the full-width supernet (any plan in force is replaced), as the method prunes once.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.modules.conv import _ConvNd

from prunekit.channels import ChannelGroup, ChannelPlan, macs_estimator, plan_macs
from prunekit.channels.readers import l1_group_scores
from prunekit.channels.widths import check_round_to
from prunekit.errors import UserError
from prunekit.measure import count_macs
from prunekit.methods import METHODS
from prunekit.methods.base import TrainContext
from prunekit.methods.budget import MacsBudget
from prunekit.methods.params import PRUNE_EPOCH_HELP, TARGET_MACS_HELP, ChannelParams, param
from prunekit.methods.prune_once import PruneOnceMethod
from prunekit.methods.widths import ROUND_TO_HELP, PlanRounding

IMPORTANCES = ("bn_scale", "group_norm")

# (qualified layer name, True for output channels, removed indices): Torch-Pruning's pruning-history entry.
Removal = tuple[str, bool, Sequence[int]]


@dataclasses.dataclass
class TorchPruningParams(ChannelParams):
    """method.params of `torch_pruning`: give exactly one of `pruning_ratio` and `target_macs_ratio`."""

    amount_key: ClassVar[str] = "pruning_ratio"

    prune_epoch: int = param(-1, PRUNE_EPOCH_HELP)
    importance: Literal["bn_scale", "group_norm"] = param(
        "bn_scale", "Torch-Pruning importance: BNScaleImportance (|gamma|) or GroupMagnitudeImportance (group L2)")
    pruning_ratio: float | None = param(None, "Torch-Pruning's channel pruning ratio, in [0, 1): every group keeps "
                                              "int(n * (1 - ratio)). Give this or target_macs_ratio")
    target_macs_ratio: float | None = param(None, f"{TARGET_MACS_HELP}: the smallest ratio that meets it")
    policy: Literal["internal", "all"] = param("all", "which groups Torch-Pruning may touch: \"all\" (residual "
                                                      "streams too) or \"internal\"")
    round_to: int | Literal["hardware"] = param(1, f"{ROUND_TO_HELP}. Applied by prunekit to the replayed plan "
                                                   "(not Torch-Pruning's own round_to); channels added or dropped "
                                                   "by it are ranked by filter L1 norm")

    def __post_init__(self) -> None:
        self.check_channel_params()
        if self.importance not in IMPORTANCES:
            raise UserError(f"method.params.importance must be one of {', '.join(IMPORTANCES)}, "
                            f"got {self.importance!r}")
        if self.pruning_ratio is not None and not 0.0 <= self.pruning_ratio < 1.0:
            raise UserError(f"method.params.pruning_ratio must lie in [0, 1), got {self.pruning_ratio}")
        # a ratio that would empty the narrowest group is reported in make_plan, where the groups are known
        check_round_to(self.round_to)


def make_importance(name: str) -> tp.importance.Importance:
    """Torch-Pruning's importance for `name` (module docstring), with its default reduction and normaliser."""
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    if name == "group_norm":
        return tp.importance.GroupMagnitudeImportance()
    raise UserError(f"unknown Torch-Pruning importance {name!r}; choose one of {', '.join(IMPORTANCES)}")


def traceable_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with gradients on (Torch-Pruning traces the graph through autograd)."""
    clone = copy.deepcopy(model).eval()
    for parameter in clone.parameters():
        parameter.requires_grad_(True)
    return clone


def ignored_layers(model: nn.Module, groups: Sequence[ChannelGroup]) -> list[nn.Module]:
    """Every Conv/Linear of `model` that produces none of `groups` (the classifier among them)."""
    producers = {name for group in groups for name in group.producers}
    return [module for name, module in model.named_modules()
            if isinstance(module, (_ConvNd, nn.Linear)) and name not in producers]


def build_pruner(model: nn.Module, groups: Sequence[ChannelGroup], example_inputs: torch.Tensor, importance: str,
                 ratio: float) -> tp.pruner.BasePruner:
    """Torch-Pruning's pruner on `model` (a `traceable_copy`): one step to `ratio` with `importance`."""
    with torch.enable_grad():
        return tp.pruner.BasePruner(model, example_inputs[:1], importance=make_importance(importance),
                                    global_pruning=False, pruning_ratio=ratio, iterative_steps=1,
                                    ignored_layers=ignored_layers(model, groups),
                                    forward_fn=lambda m, x: m(x))


def planned_removals(model: nn.Module, groups: Sequence[ChannelGroup], example_inputs: torch.Tensor,
                     importance: str, ratio: float) -> list[Removal]:
    """What Torch-Pruning would remove at `ratio`, read from its interactive step without pruning `model`.

    Every yielded group lists its root's removed output indices first; the groups are disjoint, so not pruning
    one does not change the indices of the next."""
    pruner = build_pruner(model, groups, example_inputs, importance, ratio)
    names = {module: name for name, module in model.named_modules()}
    removals: list[Removal] = []
    for group in pruner.step(interactive=True):
        dep, idxs = group[0]
        removals.append((names[dep.target.module], pruner.DG.is_out_channel_pruning_fn(dep.handler), list(idxs)))
    return removals


def tp_prune(model: nn.Module, groups: Sequence[ChannelGroup], example_inputs: torch.Tensor, importance: str,
             ratio: float) -> tuple[nn.Module, list[Removal]]:
    """Let Torch-Pruning prune a copy of `model` at `ratio`: (the pruned copy, its pruning history)."""
    pruned = traceable_copy(model)
    pruner = build_pruner(pruned, groups, example_inputs, importance, ratio)
    pruner.step()
    history = [(name, bool(is_out), [int(i) for i in idxs]) for name, is_out, idxs in pruner.pruning_history()]
    return pruned, history


def plan_from_removals(removals: Sequence[Removal], groups: Sequence[ChannelGroup]) -> ChannelPlan:
    """The ChannelPlan that removes what `removals` lists: a removed output row of a group's producer is the group
    channel its weight slice maps that row to. Groups not named keep every channel."""
    channel_of_row: dict[str, tuple[ChannelGroup, dict[int, int]]] = {}
    for group in groups:
        for piece in group.slices:
            if piece.tensor == "weight" and piece.dim == 0 and piece.module in group.producers:
                channel_of_row[piece.module] = (group, dict(zip(piece.positions, piece.channels, strict=True)))
    removed: dict[str, set[int]] = {}
    for name, is_out, idxs in removals:
        if not is_out or name not in channel_of_row:
            side = "output" if is_out else "input"
            raise RuntimeError(f"Torch-Pruning pruned the {side} channels of {name!r}, which is not the producer "
                               "of any prunable channel group")
        group, channel_of = channel_of_row[name]
        removed.setdefault(group.name, set()).update(channel_of[int(i)] for i in idxs)
    keep = {}
    for group in groups:
        if group.name in removed:
            keep[group.name] = [c for c in range(group.size) if c not in removed[group.name]]
    return ChannelPlan(keep)


def largest_ratio(sizes: Sequence[int]) -> float:
    """Ratios must stay below this: at 1 - 1/n_min the narrowest group (n_min channels) would keep none."""
    return 1.0 - 1.0 / min(sizes)


def candidate_ratios(sizes: Sequence[int]) -> list[float]:
    """Ascending pruning ratios, one inside each interval where every group's kept count int(n * (1 - r)) is
    constant (module docstring): 0 and the midpoints between consecutive breakpoints 1 - k / n below
    `largest_ratio`."""
    limit = largest_ratio(sizes)
    breakpoints = sorted({1.0 - k / n for n in set(sizes) for k in range(1, n + 1)} | {0.0})
    breakpoints = [b for b in breakpoints if b <= limit]
    return [0.0] + [(a + b) / 2 for a, b in zip(breakpoints, breakpoints[1:], strict=False)]


@METHODS.register("torch_pruning")
class TorchPruningBaseline(PruneOnceMethod):
    """Torch-Pruning's pruner, once, at a pruning ratio or a MACs target (module docstring)."""

    name = "torch_pruning"
    summary = "once, Torch-Pruning's own pruner (DepGraph) replayed as a channel plan"
    paper = "Fang et al., DepGraph: Towards Any Structural Pruning, CVPR 2023"
    Params = TorchPruningParams

    def __init__(self, params: TorchPruningParams) -> None:
        super().__init__()
        self.params = params
        self.channel_policy = params.policy
        self.rounding = PlanRounding(params.round_to)  # Torch-Pruning keeps at least one channel per group

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.rounding.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rounding.load_state_dict(state)

    def make_plan(self, ctx: TrainContext) -> tuple[ChannelPlan, dict[str, Any]]:
        assert ctx.groups is not None and ctx.supernet is not None
        started = time.perf_counter()
        params, groups, example = self.params, list(ctx.groups), ctx.example_inputs[:1]
        if not groups:
            raise UserError(f"{self.name}: the model has no prunable channel group under policy {params.policy!r}")
        dense_macs = count_macs(ctx.supernet, example)
        info: dict[str, Any] = {"importance": params.importance}
        ratio = params.pruning_ratio
        if ratio is not None and ratio >= largest_ratio([g.size for g in groups]):
            raise UserError(f"{self.name}: method.params.pruning_ratio {ratio} would leave no channel in the "
                            f"narrowest group ({min(g.size for g in groups)} channels); use a ratio below "
                            f"{largest_ratio([g.size for g in groups]):.4f}")
        budget = None if params.target_macs_ratio is None else MacsBudget(params.target_macs_ratio, dense_macs)
        scores = {g.name: l1_group_scores(ctx.supernet, g) for g in groups}  # for round_to only
        if budget is not None and ratio is None:
            estimate = macs_estimator(ctx.supernet, groups, example)
            model = traceable_copy(ctx.supernet)  # interactive steps only read it
            ratios = candidate_ratios([g.size for g in groups])

            def macs_at(candidate: float) -> int:
                removals = planned_removals(model, groups, example, params.importance, candidate)
                return estimate(self.rounding.priced(plan_from_removals(removals, groups), groups, scores))

            ratio = budget.search(ratios, macs_at).value
        _, history = tp_prune(ctx.supernet, groups, example, params.importance, ratio)
        plan, rounding_info = self.rounding.round_once(ctx, plan_from_removals(history, groups), groups, scores)
        info.update(rounding_info)
        macs = plan_macs(ctx.supernet, plan, groups, ctx.example_inputs)  # measured, not estimated
        info.update({"pruning_ratio": ratio, "macs_ratio": macs / dense_macs,
                     "select_seconds": time.perf_counter() - started})
        if budget is not None:
            info.update(budget.outcome(macs))
        return plan, info
