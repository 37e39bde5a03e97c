"""REPrune (Park et al., AAAI 2024): channel pruning via kernel representative selection, during training.

The schedule is CHEX's, as REPrune Alg. 2 uses it (`PruneRegrowMethod`): a global BN-scale quantile allocates
the channels (Eq. 8/9), Alg. 1 selects them (per-input-channel Ward clustering of the kernels, one cut height
per layer, greedy maximum cluster coverage), and CHEX regrowth brings some back with a cosine-decayed factor.

    method:
      name: reprune
      params: {sparsity: 0.55, t_prune: 96, interval: 2, delta0: 0.2}
"""

from __future__ import annotations

import torch

from prunekit.criteria import reprune_keep
from prunekit.methods import METHODS
from prunekit.methods.prune_regrow import GroupSelection, PruneRegrowMethod, PruneRegrowParams


@METHODS.register("reprune")
class REPrune(PruneRegrowMethod):
    """REPrune Alg. 2 with Alg. 1 as the selection step; see `PruneRegrowMethod` for the schedule."""

    name = "reprune"
    summary = ("prune and regrow channels during training: global BN-scale allocation, "
               "kernel-representative selection (Alg. 1), CHEX regrowth")
    paper = "Park et al., REPrune: Channel Pruning via Kernel Representative Selection, AAAI 2024"
    Params = PruneRegrowParams

    def select(self, filters: torch.Tensor, n_keep: int, active: list[int], seed: int) -> GroupSelection:
        """REPrune Alg. 1 on the group's filters (inputs already restricted to the active input channels),
        among the active filters, keeping n_keep = ceil((1 - s^l) n) of them (s^l = 1 - n_keep / n).

        min_channels is already folded into n_keep; groups allocated s^l = 1 never get here
        (`PruneRegrowMethod.decide` keeps their `criteria.fully_pruned_keep` filters).
        Coverage: covered clusters over all clusters of the active input channels (Fig. 3). The clustering
        of a large layer uses as many worker processes as torch has threads (`train.threads`).
        """
        result = reprune_keep(filters, n_keep, seed=seed, active=active, workers=torch.get_num_threads())
        total = sum(result.clusters_per_channel)
        covered = None if result.coverage_rate is None else result.coverage_rate * total
        return GroupSelection(result.kept, covered, total)
