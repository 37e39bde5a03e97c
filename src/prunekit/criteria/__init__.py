"""Importance and selection functions, pure functions of tensors where possible.

- reprune: REPrune Eq. 8/9 allocation and Alg. 1 selection (Ward clustering + greedy max coverage)
- chex: CHEX leverage-score selection and regrowth scoring/sampling
- group_lasso: PruneTrain's group lasso, its calibrated weight and sparse-channel detection
- slimming: Network Slimming's BN-scale L1 and global percentile threshold
- hrank: HRank's feature-map ranks
- magnitude: L1-norm / BN-scale importance, top-k, and the one rule for a layer allocated s^l = 1

Criteria take and return counts, and raise ValueError; the methods turn user mistakes into UserError.
"""

from prunekit.criteria.chex import (
    chex_leverage_scores,
    chex_leverage_select,
    regrowth_delta,
    regrowth_scores,
    sample_regrowth,
)
from prunekit.criteria.coverage import CoverageResult, greedy_max_coverage
from prunekit.criteria.group_lasso import (
    calibrate_group_lasso_weight,
    group_lasso_layers,
    group_lasso_penalty,
    group_lasso_penalty_from_layers,
    removable_channels,
    sparse_channel_masks,
)
from prunekit.criteria.hrank import HRankCollector, collect_feature_map_ranks, feature_map_rank, hrank_keep
from prunekit.criteria.magnitude import (
    bn_scale_importance,
    fully_pruned_keep,
    keep_top,
    l1_filter_norms,
    l1_filter_select,
    prune_count,
)
from prunekit.criteria.reprune import (
    SelectionResult,
    keep_count,
    reprune_allocate,
    reprune_allocation,
    reprune_keep,
    reprune_pruned_counts,
    reprune_select,
    reprune_select_detailed,
)
from prunekit.criteria.slimming import (
    bn_l1_penalty,
    bn_l1_subgradient_,
    bn_layers,
    l1_subgradient_,
    slimming_keep,
    slimming_threshold,
)

__all__ = [
    "CoverageResult", "HRankCollector", "SelectionResult", "bn_l1_penalty", "bn_l1_subgradient_", "bn_layers",
    "bn_scale_importance", "calibrate_group_lasso_weight", "chex_leverage_scores", "chex_leverage_select",
    "collect_feature_map_ranks", "feature_map_rank", "fully_pruned_keep", "greedy_max_coverage", "group_lasso_layers",
    "group_lasso_penalty", "group_lasso_penalty_from_layers", "hrank_keep", "keep_count", "keep_top",
    "l1_filter_norms", "l1_filter_select", "l1_subgradient_", "prune_count", "regrowth_delta", "regrowth_scores",
    "removable_channels", "reprune_allocate", "reprune_allocation", "reprune_keep", "reprune_pruned_counts",
    "reprune_select",
    "reprune_select_detailed", "sample_regrowth", "slimming_keep", "slimming_threshold", "sparse_channel_masks",
]
