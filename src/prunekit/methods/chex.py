"""CHEX (Hou et al., CVPR 2022): channel exploration by repeated pruning and regrowth during training.

The same schedule as REPrune (`PruneRegrowMethod`: initial uniform L1 prune at s - delta_0, global BN-scale
allocation every dT epochs up to T_prune, cosine-decayed regrowth by projection residuals) with CHEX's own
selection step: column subset selection by leverage scores of the active filters.

    method:
      name: chex
      params: {sparsity: 0.5, t_prune: 180, interval: 2, delta0: 0.2}
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch

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
