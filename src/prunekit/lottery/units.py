"""What a lottery level prunes, one registry entry per unit so the driver has no branch per unit. Only "weights"
(unstructured masks) exists; the structured variant (L1 filter norms over channel groups, a physically smaller
ticket) would register "channels" and adjust the StartPoint in `prepare_start` (not built yet)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunekit.lottery.config import LotteryConfig
from prunekit.registry import Registry
from prunekit.weights.magnitude import check_names, magnitude_masks, prunable_weights, random_masks_like

PRUNERS: Registry[type[LevelPruner]] = Registry("lottery unit")


class LevelPruner:
    """Computes a level's mask from the previous level's final model and mask."""

    def __init__(self, lottery: LotteryConfig) -> None:
        self.lottery = lottery

    def prune(self, model: nn.Module, masks: dict[str, torch.Tensor], probe: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def random_like(self, masks: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The random-pruning control: a random mask of the same per-tensor densities."""
        return random_masks_like(masks, generator)

    def prepare_start(self, start: Any, probe: Any) -> None:
        """Adjust a level's StartPoint before training (nothing for unstructured masks)."""


@PRUNERS.register("weights")
class WeightPruner(LevelPruner):
    """Unstructured magnitude pruning of the remaining weights (`prunekit.weights.magnitude`)."""

    def prune(self, model: nn.Module, masks: dict[str, torch.Tensor], probe: Any) -> dict[str, torch.Tensor]:
        lot = self.lottery
        weights = prunable_weights(model, lot.exclude)
        check_names(lot.exclude, prunable_weights(model), "lottery.exclude")
        check_names(lot.layer_rates, weights, "lottery.layer_rates")
        return magnitude_masks(weights, masks, lot.rate, lot.scope, lot.layer_rates)


def build_pruner(lottery: LotteryConfig) -> LevelPruner:
    return PRUNERS.get("weights")(lottery)
