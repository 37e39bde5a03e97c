"""Weight-level sparsity: masks owned by `SupernetState` (see masks.py), and the helpers that keep optimizer
state consistent with them."""

from prunekit.weights.masks import WeightMasks
from prunekit.weights.optimizer_state import zero_changed_state_

__all__ = ["WeightMasks", "zero_changed_state_"]
