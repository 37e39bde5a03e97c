"""The prune-and-regrow schedule of REPrune and CHEX: `PruneRegrowMethod`, the CHEX schedule as REPrune Alg. 2
uses it, with the selection step left to a subclass (`reprune.py`: Alg. 1, `chex.py`: leverage scores).

It reads the supernet (full width, most-recently-used values at removed channels) and the plan in force through
`channels.readers`; a MACs target goes through `methods.budget`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from prunekit.channels import ChannelGroup, ChannelPlan, kept_indices
from prunekit.channels.readers import dependency_order, filter_inputs, group_filters, group_gammas
from prunekit.channels.surgery import KeptIndices
from prunekit.channels.widths import check_round_to
from prunekit.criteria import (
    fully_pruned_keep,
    keep_count,
    l1_filter_norms,
    l1_filter_select,
    regrowth_delta,
    regrowth_scores,
    reprune_allocate,
    reprune_pruned_counts,
    sample_regrowth,
)
from prunekit.errors import UserError
from prunekit.methods.base import Decision, Method, TrainContext
from prunekit.methods.budget import MacsBudget, PlanMacs
from prunekit.methods.params import MIN_CHANNELS_HELP, POLICY_HELP, TARGET_MACS_HELP, ChannelParams, param
from prunekit.methods.widths import ROUND_TO_HELP, PlanRounding
from prunekit.seeding import derived_seed


def is_decision_epoch(t: int, t_prune: int, interval: int) -> bool:
    """REPrune Alg. 2 line 8: decide after epoch t (counted from 1) when t mod dT = 0 and t <= T_prune.

    Also at t = T_prune when T_prune is not a multiple of dT, so that the last decision has delta = 0 and the
    final plan meets the target (the paper settings 96/2 and 180/2 are multiples, where this adds nothing)."""
    return 1 <= t <= t_prune and (t % interval == 0 or t == t_prune)


def initial_keep_count(n: int, sparsity: float) -> int:
    """Channels a group of `n` keeps in CHEX's initial prune at sparsity r = s - delta_0: int(C (1 - r)), as
    CHEX's code computes it (floor, in float arithmetic), not REPrune's ceil((1 - s) n) used at decisions."""
    return int(n * (1.0 - sparsity))


def regrown_channels(old: ChannelPlan | None, new: ChannelPlan, groups: Sequence[ChannelGroup]) -> dict[str, list[int]]:
    """{group name: channels the new plan keeps and the old one had removed} (sorted; groups with none left out).
    Under no old plan every channel was active, so nothing is regrown."""
    if old is None:
        return {}
    grown = {g.name: sorted(set(new.kept(g)) - set(old.kept(g))) for g in groups}
    return {name: channels for name, channels in grown.items() if channels}


def round_up(count: int, round_to: int, size: int) -> int:
    """`count` rounded up to a multiple of `round_to`, at most `size` (ChannelPlan.rounded's rule)."""
    return min(size, -(-count // round_to) * round_to)


# ---------------------------------------------------------------------------------------------- the schedule


@dataclasses.dataclass
class PruneRegrowParams(ChannelParams):
    """Parameters of REPrune and CHEX (method.params in a config). Give `sparsity` or `target_macs_ratio`.

    With `target_macs_ratio`, each decision finds the smallest global sparsity k/N whose Eq. 8/9 allocation
    (with round_to and min_channels) reaches it, by bisection over k (the initial plan: the smallest such uniform
    sparsity; with round_to hardware the search prices unrounded counts and the rounding keeps within them).
    That sparsity moves as the allocation moves: once the BN scales favour cheap layers it can fall
    below the initial s - delta_0, and the next decision then regrows more than it prunes. `round_to` adds the
    removed channels with the largest regrowth scores (initial plan: the largest L1 norms); with `sparsity` the
    final plan is then less sparse than s, while a MACs target accounts for the rounding.
    """

    amount_key: ClassVar[str] = "sparsity"

    sparsity: float | None = param(None, "global channel sparsity s: the fraction of the prunable groups' channels "
                                         "removed at the end, in [0, 1). Give this or target_macs_ratio")
    target_macs_ratio: float | None = param(None, f"{TARGET_MACS_HELP}: each decision bisects for the smallest "
                                                  "global sparsity k/N whose Eq. 8/9 allocation meets it")
    t_prune: int = param(96, "T_prune: the last epoch (counted from 1) with a decision; the plan is final after it")
    interval: int = param(2, "dT: epochs between decisions")
    delta0: float = param(0.2, "delta_0, the initial regrowth factor, in [0, 1]: the initial plan prunes at "
                               "s - delta_0; decision t regrows between s and s - delta_t (cosine decay)")
    policy: Literal["internal", "all"] = param("internal", POLICY_HELP)
    round_to: int | Literal["hardware"] = param(1, ROUND_TO_HELP)
    min_channels: int = param(1, MIN_CHANNELS_HELP)
    regrow_momentum: Literal["restore", "zero"] = param(
        "restore", "optimizer state of a regrown channel: restore (the state it had when it was pruned) or zero "
                   "(CHEX's code, where a masked channel's momentum decays to about 0)")

    def __post_init__(self) -> None:
        self.check_channel_params()
        prefix = "method.params."
        if self.regrow_momentum not in ("restore", "zero"):
            raise UserError(f"{prefix}regrow_momentum must be restore or zero, got {self.regrow_momentum!r}")
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise UserError(f"{prefix}sparsity must be in [0, 1), got {self.sparsity}")
        if self.t_prune < 1:
            raise UserError(f"{prefix}t_prune must be >= 1, got {self.t_prune}")
        if self.interval < 1:
            raise UserError(f"{prefix}interval must be >= 1, got {self.interval}")
        if not 0.0 <= self.delta0 <= 1.0:
            raise UserError(f"{prefix}delta0 must be in [0, 1], got {self.delta0}")
        check_round_to(self.round_to, f"{prefix}round_to")


@dataclasses.dataclass
class GroupSelection:
    """What a selection step kept in one group: sorted channel indices (a subset of the active ones), and for
    REPrune the coverage it reached (covered clusters, all clusters)."""

    kept: list[int]
    covered_clusters: float | None = None
    total_clusters: int | None = None


class PruneRegrowMethod(Method):
    """The CHEX schedule as REPrune Alg. 2 uses it; subclasses supply `select` (Alg. 1 or CSS).

    - Initial plan (on_train_start): uniform L1-norm pruning of every group at s - delta_0 (CHEX).
    - After epoch t (from 1) with t mod dT = 0 and t <= T_prune: allocate at s by the global BN-scale quantile
      (REPrune Eq. 8/9, removed channels counting as gamma = 0), select that many channels per group among the
      active ones (`select`), then regrow, per group, the difference between the allocations at s - delta_t and
      s, sampled without replacement with probability softmax of each candidate's residual outside the span of
      the kept filters (CHEX). Groups are decided in dependency order (`channels.readers.dependency_order`),
      each over the input channels its feeding groups keep at this same decision (hard-pruning consistency).
      Regrown channels return with their most recently used weights, BN statistics and optimizer state, which
      the supernet holds: the new plan is all it takes.
    - After T_prune nothing changes.
    """

    Params = PruneRegrowParams
    channel_policy: str | None = "internal"

    def __init__(self, params: PruneRegrowParams | None = None) -> None:
        self.params = params or PruneRegrowParams(sparsity=0.5)
        self.channel_policy = self.params.policy
        self.groups: list[ChannelGroup] = []
        self.skipped: list[str] = []
        self.macs: PlanMacs | None = None
        self.decided: list[int] = []  # epochs (from 1) at which a plan was decided
        self.rounding = PlanRounding(self.params.round_to, self.params.min_channels)

    # ------------------------------------------------------------------ subclass hooks
    def select(self, filters: torch.Tensor, n_keep: int, active: list[int], seed: int) -> GroupSelection:
        """Keep `n_keep` of the `active` channels (rows of `filters`); n_keep <= len(active)."""
        raise NotImplementedError

    def group_filters(self, supernet: nn.Module, group: ChannelGroup, plan: ChannelPlan | None,
                      groups: Sequence[ChannelGroup], inputs: KeptIndices | None = None) -> torch.Tensor | None:
        """The filters a group is scored by (initial prune, selection, regrowth); CHEX narrows a residual stream
        to its projection conv. Default: every writer's filters stacked (`readers.group_filters`)."""
        return group_filters(supernet, group, plan, groups, inputs)

    # ------------------------------------------------------------------ hooks
    def _prepare(self, ctx: TrainContext) -> None:
        if ctx.supernet is None or ctx.groups is None:
            raise RuntimeError(f"{self.name} needs ctx.supernet and ctx.groups (set by prunekit's Trainer)")
        if self.params.t_prune > ctx.epochs:
            raise UserError(f"method.params.t_prune ({self.params.t_prune}) exceeds train.epochs ({ctx.epochs}): "
                            f"the plan would never reach its target")
        self.groups, self.skipped = [], []
        for group in ctx.groups:
            if (group_gammas(ctx.supernet, group, None) is None
                    or self.group_filters(ctx.supernet, group, None, ctx.groups) is None):
                self.skipped.append(group.name)  # no BN scale to allocate by, or no conv/linear to select on
            else:
                self.groups.append(group)
        if not self.groups:
            raise UserError(f"{self.name}: no prunable channel group has a BatchNorm (its scale allocates the "
                            f"channels, REPrune Eq. 8/9)")
        self.macs = PlanMacs(ctx.supernet, self.groups, ctx.example_inputs)
        self.rounding.prepare(ctx, self.groups, self.macs)

    def on_train_start(self, ctx: TrainContext) -> Decision | None:
        self._prepare(ctx)
        if ctx.plan is not None:  # resumed: the plan in force comes from the checkpoint
            return None
        p = self.params
        info: dict[str, Any] = {}
        if p.sparsity is not None:
            target = p.sparsity
        else:
            target, info = self._uniform_sparsity_for_macs()
        sparsity = max(0.0, target - p.delta0)
        start = time.perf_counter()
        keep: dict[str, list[int]] = {}
        scores: dict[str, torch.Tensor] = {}
        for group in self.groups:
            filters = self.group_filters(ctx.supernet, group, None, ctx.groups)
            n_keep = max(min(p.min_channels, group.size), initial_keep_count(group.size, sparsity))
            keep[group.name] = l1_filter_select(filters, n_keep)
            scores[group.name] = l1_filter_norms(filters)
        plan, rounding_info = self.rounding.apply(ChannelPlan(keep), self.groups, scores)
        info.update(rounding_info)
        info.update({"t": 0, "target_sparsity": target, "initial_sparsity": sparsity, "delta": p.delta0,
                     "select_seconds": time.perf_counter() - start, "skipped_groups": self.skipped})
        info.update(self._macs_info(plan))
        return Decision(plan=plan, info=info)

    def on_epoch_end(self, epoch: int, ctx: TrainContext) -> Decision | None:
        t = epoch + 1
        if not is_decision_epoch(t, self.params.t_prune, self.params.interval):
            return None
        return self.decide(t, ctx)

    def state_dict(self) -> dict[str, Any]:
        return {"decided": list(self.decided), **self.rounding.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decided = [int(t) for t in state.get("decided", [])]
        self.rounding.load_state_dict(state)

    # ------------------------------------------------------------------ one decision
    def decide(self, t: int, ctx: TrainContext) -> Decision:
        """Prune to the target and regrow (REPrune Alg. 2 lines 9-12) after epoch t; returns the new plan."""
        if self.macs is None:
            self._prepare(ctx)
        p, supernet, plan = self.params, ctx.supernet, ctx.plan
        assert supernet is not None and ctx.groups is not None
        gammas = [group_gammas(supernet, g, plan) for g in self.groups]
        assert all(g is not None for g in gammas)  # groups without a BN were left out in _prepare
        info: dict[str, Any] = {"t": t}
        if p.sparsity is not None:
            target = p.sparsity
            down = reprune_pruned_counts(gammas, target)
        else:
            n_prune, macs_info = self._global_prune_count_for_macs(gammas)
            info.update(macs_info)
            target = n_prune / sum(g.size for g in self.groups)
            down = reprune_allocate(gammas, n_prune)
        delta = regrowth_delta(t, p.t_prune, p.delta0)
        looser = max(0.0, target - delta)
        up = reprune_pruned_counts(gammas, looser)
        generator = torch.Generator().manual_seed(derived_seed(ctx.seed, t, 0x5E6))
        # Hard-pruning consistency (REPrune, He et al. 2018): layer l is clustered over the input channels that
        # survive THIS decision at layer l-1. Groups go in dependency order, and each reads its filters through
        # the partial new plan: the new (final, rounded) kept sets of the groups decided so far, the old plan
        # elsewhere. The inputs include what l-1 regrew at this decision: those are the channels layer l
        # computes with afterwards (at the final decision, delta = 0, they are exactly l-1's selection).
        partial: dict[str, list[int]] = dict(plan.keep) if plan is not None else {}
        feeds = filter_inputs(self.groups, supernet)
        decided_now: set[str] = set()
        old_inputs = kept_indices(supernet, ctx.groups, plan) if plan is not None else {}
        keep: dict[str, list[int]] = {}
        finals = self._final_counts(plan, down, up)
        if self.rounding.hardware:
            finals, rounding_info = self.rounding.target_counts(finals)
            info.update(rounding_info)
        layer_sparsity, selected, regrown, coverage = {}, {}, {}, {}
        covered_total, clusters_total, select_seconds = 0.0, 0, 0.0
        fully_pruned: list[str] = []  # groups whose allocation was s^l = 1
        for index in dependency_order(self.groups, supernet):
            group = self.groups[index]
            n = group.size
            floor = min(p.min_channels, n)
            active = (plan or ChannelPlan()).kept(group)
            inputs = (kept_indices(supernet, ctx.groups, ChannelPlan(partial)) if feeds[group.name] & decided_now
                      else old_inputs)
            filters = self.group_filters(supernet, group, plan, ctx.groups, inputs)
            assert filters is not None
            n_keep = max(floor, n - down[index])
            n_total = max(floor, n - up[index])
            final = finals[group.name]  # the group's kept count after rounding (_final_counts, round_to)
            start = time.perf_counter()
            if down[index] >= n:
                # s^l = 1: REPrune Alg. 2 (line 11) skips the layer, and no selection rule can rank filters for
                # zero survivors; keep the `min_channels` largest-L1 active filters instead.
                choice = GroupSelection(fully_pruned_keep(filters, p.min_channels, active))
                fully_pruned.append(group.name)
            else:
                choice = self.select(filters, min(n_keep, len(active), final), active,
                                     derived_seed(ctx.seed, t, index, 0xC1))
            select_seconds += time.perf_counter() - start
            kept_set = set(choice.kept)
            candidates = [c for c in range(n) if c not in kept_set]
            n_grow = max(0, min(n_total, final) - len(choice.kept))
            if n_grow or final > len(choice.kept) + n_grow:
                scores = regrowth_scores(filters, choice.kept, candidates)
            else:  # nothing to regrow or round up: skip the projection (an SVD per group)
                scores = torch.zeros(len(candidates), dtype=torch.float64)
            grown = [candidates[i] for i in sample_regrowth(scores, n_grow, generator)]
            full_scores = torch.zeros(n, dtype=torch.float64)
            full_scores[candidates] = scores
            keep[group.name] = ChannelPlan({group.name: sorted(choice.kept + grown)}).with_counts(
                [group], {group.name: final}, {group.name: full_scores}).keep[group.name]
            partial[group.name] = keep[group.name]
            decided_now.add(group.name)
            layer_sparsity[group.name] = down[index] / n
            selected[group.name] = len(choice.kept)
            regrown[group.name] = len(grown)
            if choice.total_clusters is not None and choice.covered_clusters is not None:
                coverage[group.name] = choice.covered_clusters / max(1, choice.total_clusters)
                covered_total += choice.covered_clusters
                clusters_total += choice.total_clusters
        new_plan = ChannelPlan({g.name: keep[g.name] for g in self.groups})  # each group already rounded
        self.decided.append(t)
        info.update({
            "target_sparsity": target, "delta": delta, "regrow_sparsity": looser, "final": t >= p.t_prune,
            "layer_sparsity": layer_sparsity, "selected": selected, "regrown": regrown,
            "regrown_total": sum(regrown.values()), "select_seconds": select_seconds, "fully_pruned": fully_pruned,
        })
        if coverage:
            info["coverage_rate"] = covered_total / max(1, clusters_total)
            info["coverage_rate_per_group"] = coverage
        info.update(self._macs_info(new_plan))
        reset = regrown_channels(plan, new_plan, self.groups) if p.regrow_momentum == "zero" else None
        if reset is not None:
            info["momentum_reset"] = sum(len(c) for c in reset.values())
        return Decision(plan=new_plan, info=info, reset_channels=reset)

    def _final_counts(self, plan: ChannelPlan | None, down: Sequence[int], up: Sequence[int]) -> dict[str, int]:
        """{group: kept count} of this decision before hardware rounding: the selection (n - down, at most the
        active channels) plus regrowth up to n - up, both at least min_channels; rounded up to the integer
        round_to (1 under hardware rounding, which `PlanRounding.target_counts` then applies to all groups)."""
        counts = {}
        for group, d, u in zip(self.groups, down, up, strict=True):
            floor = min(self.params.min_channels, group.size)
            n_active = len((plan or ChannelPlan()).kept(group))
            selected = min(max(floor, group.size - d), n_active)  # s^l = 1 too: fully_pruned_keep keeps the floor
            counts[group.name] = round_up(max(selected, floor, group.size - u), self.rounding.step, group.size)
        return counts

    # ------------------------------------------------------------------ MACs targets
    def _counts(self, kept: Sequence[int]) -> list[int]:
        """Kept counts after the min_channels floor and round_to (what the plan will have; under hardware
        rounding the unrounded counts, within whose MACs the rounding keeps the plan)."""
        p = self.params
        return self.rounding.search_counts(self.groups, [max(min(p.min_channels, g.size), k)
                                                         for g, k in zip(self.groups, kept, strict=True)])

    def _budget(self) -> MacsBudget:
        assert self.macs is not None and self.params.target_macs_ratio is not None
        return MacsBudget(self.params.target_macs_ratio, self.macs.dense())

    def _uniform_sparsity_for_macs(self) -> tuple[float, dict[str, Any]]:
        """The smallest uniform sparsity k/N whose plan meets the MACs target (initial plan, all gammas alike)."""
        assert self.macs is not None
        total = sum(g.size for g in self.groups)

        def macs_at(sparsity: float) -> int:
            return self.macs(self._counts([keep_count(g.size, sparsity) for g in self.groups]))

        choice = self._budget().search([k / total for k in range(total + 1)], macs_at)
        return choice.value, choice.info()

    def _global_prune_count_for_macs(self, gammas: Sequence[torch.Tensor]) -> tuple[int, dict[str, Any]]:
        """The smallest global count k of pruned channels whose Eq. 8/9 allocation meets the MACs target."""
        assert self.macs is not None
        sizes = [g.size for g in self.groups]
        total = sum(sizes)

        def macs_at(n_prune: int) -> int:
            pruned = reprune_allocate(gammas, n_prune)
            return self.macs(self._counts([n - c for n, c in zip(sizes, pruned, strict=True)]))

        choice = self._budget().search(range(total + 1), macs_at)
        return choice.value, choice.info()

    def _macs_info(self, plan: ChannelPlan) -> dict[str, Any]:
        assert self.macs is not None
        planned = self.macs([len(plan.kept(g)) for g in self.groups])
        return {"planned_macs": planned, "planned_macs_ratio": planned / max(1, self.macs.dense())}


__all__ = [
    "GroupSelection",
    "PruneRegrowMethod",
    "PruneRegrowParams",
    "initial_keep_count",
    "is_decision_epoch",
    "regrown_channels",
    "round_up",
]
