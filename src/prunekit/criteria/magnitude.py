"""Magnitude criteria for one-shot baselines: filter L1 norms, BN scales, top-k selection.

Every function here is deterministic: ties are broken by index (documented per function), so the same scores
always give the same channels on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

# Slack for `fraction * total` landing just below an integer (0.29 * 100 = 28.999999999999996 in floats).
_COUNT_SLACK = 1e-9


def prune_count(total: int, fraction: float) -> int:
    """How many of `total` channels a pruning `fraction` in [0, 1] removes: floor(fraction * total).

    floor, as Network Slimming (`int(total * percent)`) and HRank (`int(rate * F)`) do, with a 1e-9 slack so
    that representation error (0.29 * 100) does not drop a channel.
    """
    if not 0.0 <= fraction <= 1.0 or math.isnan(fraction):
        raise ValueError(f"a pruning fraction must lie in [0, 1], got {fraction}")
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    return min(total, math.floor(fraction * total + _COUNT_SLACK))


def l1_filter_norms(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-filter L1 norm sum_{c,h,w} |W[o, c, h, w]| (Li et al. 2017, "Pruning Filters for Efficient
    ConvNets").

    Works for any weight whose first dimension indexes output channels (Conv2d, Linear). Returns a detached
    float tensor of shape (out_channels,).
    """
    if weight.dim() < 1:
        raise ValueError("l1_filter_norms needs a weight with an output-channel dimension")
    return weight.detach().abs().reshape(weight.shape[0], -1).sum(dim=1)


def bn_scale_importance(bn: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """|gamma| of a BatchNorm layer, detached: the Network Slimming channel importance."""
    if bn.weight is None:
        raise ValueError("bn_scale_importance needs an affine BatchNorm (affine=False has no gamma)")
    return bn.weight.detach().abs()


def keep_top(scores: torch.Tensor, n_keep: int) -> list[int]:
    """Ascending indices of the `n_keep` largest scores; among equal scores the lower index is kept first."""
    if scores.dim() != 1:
        raise ValueError(f"keep_top needs a 1-D score vector, got shape {tuple(scores.shape)}")
    if not 0 <= n_keep <= scores.numel():
        raise ValueError(f"n_keep must lie in [0, {scores.numel()}], got {n_keep}")
    if torch.isnan(scores).any():
        raise ValueError("keep_top got NaN scores")
    # A stable descending sort keeps equal scores in index order, so lower indices come first.
    order = torch.sort(scores.detach().cpu(), descending=True, stable=True).indices
    return sorted(order[:n_keep].tolist())


def l1_filter_select(weight: torch.Tensor, n_keep: int, active: Sequence[int] | None = None) -> list[int]:
    """Uniform L1-norm filter pruning: keep the `n_keep` filters (from `active`, default all) with the largest
    L1 norms. Ties go to the lower index. Returns sorted filter indices."""
    norms = l1_filter_norms(weight)
    if active is None:
        return keep_top(norms, n_keep)
    pool = sorted(int(i) for i in active)
    return [pool[i] for i in keep_top(norms[pool], n_keep)]


def fully_pruned_keep(weight: torch.Tensor, min_channels: int, active: Sequence[int] | None = None) -> list[int]:
    """The survivors of a layer allocated s^l = 1 (REPrune Alg. 2 line 11 skips such a layer): no selection rule
    can rank filters for zero survivors (Ward cannot cut to 0 clusters), so the `min_channels` active filters
    (default all) with the largest L1 norms stay. The one rule for this case, in REPrune and CHEX alike."""
    pool = weight.shape[0] if active is None else len(active)
    return l1_filter_select(weight, min(min_channels, pool), active)
