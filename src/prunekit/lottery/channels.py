"""The structured lottery unit's arithmetic: which channels a level keeps (L1 filter norms over the channel groups,
Li et al. 2017), and the conversion between a ChannelPlan and the per-group keep vectors the driver stores.

A level removes `round(rate * remaining)` of the remaining channels (as the weight unit does for weights):
- scope "layer": in every scored group separately;
- scope "global": over all scored groups at once, ranked by their raw score (the sum of the group's producers'
  filter L1 norms; not normalised by fan-in, so groups whose filters read more inputs score higher).
No group keeps fewer than `min_channels` (global scope skips a channel of a group at its floor and takes the next
one; when every group is at its floor fewer are removed). Equal scores: the lower channel index is kept. Groups
whose name matches `exclude`, and groups without a plain conv/linear producer (nothing to score), stay whole.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from prunekit.channels import ChannelGroup, ChannelPlan
from prunekit.channels.groups import is_plain_weight_layer
from prunekit.channels.readers import l1_group_scores, masked_copy
from prunekit.errors import UserError

Candidate = tuple[float, int, int, int]  # (score, group position, -channel, channel): sorts lowest score first


def keep_vectors(plan: ChannelPlan | None, groups: Sequence[ChannelGroup]) -> dict[str, torch.Tensor]:
    """{group name: bool vector of the group's size, True = kept} for every group."""
    plan = plan or ChannelPlan()
    out = {}
    for group in groups:
        vector = torch.zeros(group.size, dtype=torch.bool)
        vector[plan.kept(group)] = True
        out[group.name] = vector
    return out


def plan_of(vectors: Mapping[str, torch.Tensor], groups: Sequence[ChannelGroup]) -> ChannelPlan:
    """The plan of keep vectors (groups kept whole or not named are left out of the plan)."""
    keep = {}
    for group in groups:
        vector = vectors.get(group.name)
        if vector is None:
            continue
        if vector.numel() != group.size:
            raise UserError(f"channel keep vector of {group.name!r} has {vector.numel()} entries, group has "
                            f"{group.size}")
        if not bool(vector.all()):
            keep[group.name] = [int(i) for i in torch.nonzero(vector).flatten()]
    return ChannelPlan(keep)


def scorable(model: nn.Module, group: ChannelGroup) -> bool:
    """Whether some plain conv/linear writes the group (l1_group_scores is all zeros otherwise)."""
    return any(p.tensor == "weight" and p.dim == 0 and is_plain_weight_layer(model.get_submodule(p.module))
               for p in group.slices)


def group_scores(model: nn.Module, groups: Sequence[ChannelGroup], plan: ChannelPlan | None,
                 exclude: Sequence[str]) -> dict[str, torch.Tensor]:
    """L1 scores of the groups that are pruned, computed with the removed channels zeroed (they must not add to
    the scores of the channels they feed)."""
    names = [g.name for g in groups]
    for pattern in exclude:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise UserError(f"lottery.exclude {pattern!r} matches no channel group (they are: {', '.join(names)})")
    masked = masked_copy(model, plan, groups)
    return {g.name: l1_group_scores(masked, g) for g in groups
            if scorable(model, g) and not any(fnmatch.fnmatchcase(g.name, p) for p in exclude)}


def _candidates(position: int, kept: Sequence[int], scores: torch.Tensor) -> list[Candidate]:
    return [(float(scores[c]), position, -c, c) for c in kept]


def prune_channels(groups: Sequence[ChannelGroup], plan: ChannelPlan | None, scores: Mapping[str, torch.Tensor],
                   rate: float, scope: str, min_channels: int) -> ChannelPlan:
    """The next level's plan: `rate` of the remaining channels of the scored groups removed (module docstring)."""
    plan = plan or ChannelPlan()
    kept = {g.name: plan.kept(g) for g in groups}
    floor = {g.name: min(min_channels, len(kept[g.name])) for g in groups}
    scored = [(i, g) for i, g in enumerate(groups) if g.name in scores]
    removed: dict[str, set[int]] = {g.name: set() for _, g in scored}
    pools = ([[c for i, g in scored for c in _candidates(i, kept[g.name], scores[g.name])]] if scope == "global"
             else [_candidates(i, kept[g.name], scores[g.name]) for i, g in scored])
    for pool in pools:
        count = int(round(rate * len(pool)))
        for _, position, _, channel in sorted(pool):
            if count == 0:
                break
            name = groups[position].name
            if len(kept[name]) - len(removed[name]) > floor[name]:
                removed[name].add(channel)
                count -= 1
    keep = dict(plan.keep)
    for name, gone in removed.items():
        if gone:
            keep[name] = [c for c in kept[name] if c not in gone]
    return ChannelPlan(keep)
