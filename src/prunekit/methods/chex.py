"""CHEX (Hou et al., CVPR 2022): channel exploration by repeated pruning and regrowth during training.

The same schedule as REPrune (`PruneRegrowMethod`: initial uniform L1 prune at s - delta_0, global BN-scale
allocation every dT epochs up to T_prune, cosine-decayed regrowth by projection residuals) with CHEX's own
selection step: column subset selection by leverage scores of the active filters.

Residual streams under `policy: all` (research note reprune_chex.md §3.1, §3.3): CHEX's ResNet-50 code prunes the
downsample convs' outputs, each scored on its own weight (CSS over X = W.view(C, -1)^T, which falls back to the
filter L1 norm where d = C_in < C, as for every ResNet projection, which widens). Here a stream is one channel group
written by the projection and every block's last conv; CHEX scores it as its downsample conv: `group_filters`
returns the rows of the group's shortcut writers only (`shortcut_writers`) for the initial L1 prune, the CSS
selection and the regrowth projection (once the kept filters span all d = C_in dimensions, every candidate's
residual is about 0 and regrowth is uniform, as it is for CHEX's downsample convs). A stream without a
projection writer (a CIFAR ResNet's first stage, whose writers are the stem and the conv2s) has no CHEX
counterpart and keeps the stacked filters of all its writers.
Allocation still reads the largest |gamma| over the stream's BNs (`group_gammas`); CHEX reads the downsample BN.

The base class reads every group's filters through `self.group_filters`, so this rule holds in training.

    method:
      name: chex
      params: {sparsity: 0.5, t_prune: 180, interval: 2, delta0: 0.2}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from prunekit.channels import ChannelGroup, ChannelPlan, readers
from prunekit.channels.groups_base import is_plain_weight_layer
from prunekit.channels.surgery import KeptIndices
from prunekit.criteria import chex_leverage_select
from prunekit.methods import METHODS
from prunekit.methods.params import param
from prunekit.methods.prune_regrow import GroupSelection, PruneRegrowMethod, PruneRegrowParams


@dataclasses.dataclass
class CHEXParams(PruneRegrowParams):
    """REPrune's parameters with CHEX's default for regrown channels: their optimizer state starts at zero, as in
    CHEX's code (a masked channel's momentum decays to about 0 while it is out)."""

    regrow_momentum: Literal["restore", "zero"] = param(
        "zero", "optimizer state of a regrown channel: zero (CHEX's code) or restore (the state it had when it "
                "was pruned)")


def shortcut_writers(group: ChannelGroup, groups: Sequence[ChannelGroup], model: nn.Module) -> list[str]:
    """The projection (downsample) convs among the writers of a residual stream: writers that read a group which
    a conv outside this group's writers also reads (the block input, read by the block's first conv too). A
    block's last conv reads only its block's inner group and is not one. [] for a single-writer group, or when
    the group a writer reads is not among `groups`."""
    if group.internal:
        return []
    writers = set(group.producers)
    found = []
    for name in group.producers:
        if not is_plain_weight_layer(model.get_submodule(name)):
            continue
        read = [g for g in groups if name in g.consumers]
        if any(set(g.consumers) - writers for g in read):
            found.append(name)
    return found


@METHODS.register("chex")
class CHEX(PruneRegrowMethod):
    """CHEX with leverage-score selection; see `PruneRegrowMethod` for the schedule."""

    name = "chex"
    summary = ("prune and regrow channels during training: global BN-scale allocation, leverage-score "
               "selection, projection-residual regrowth")
    paper = "Hou et al., CHEX: CHannel EXploration for CNN Model Compression, CVPR 2022"
    Params = CHEXParams

    def select(self, filters: torch.Tensor, n_keep: int, active: list[int], seed: int) -> GroupSelection:
        """Keep the n_keep active filters with the largest leverage scores (rank n_keep; filter L1 norm where
        the filter dimension is smaller than the number of active filters, as CHEX does). Only the active
        filters are scored: the supernet holds most-recently-used values at removed ones, which CHEX's masked
        weights would show as zeros. Deterministic, so `seed` is unused."""
        rows = filters[active]
        kept = [active[i] for i in chex_leverage_select(rows, n_keep)]
        return GroupSelection(sorted(kept))

    def group_filters(self, supernet: nn.Module, group: ChannelGroup, plan: ChannelPlan | None,
                      groups: Sequence[ChannelGroup], inputs: KeptIndices | None = None) -> torch.Tensor | None:
        """The filters CHEX scores a group by (`readers.group_filters` layout): for a residual stream with a
        projection writer, that conv's rows only, as CHEX's code scores each downsample conv on its own weight
        (module docstring); every other group's writers stacked, as the base class."""
        shortcuts = set(shortcut_writers(group, groups, supernet))
        if shortcuts:
            slices = tuple(s for s in group.slices if s.dim != 0 or s.tensor != "weight" or s.module in shortcuts)
            group = dataclasses.replace(group, slices=slices)
        return readers.group_filters(supernet, group, plan, groups, inputs)
