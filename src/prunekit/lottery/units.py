"""What a lottery level prunes, one registry entry per unit so the driver has no branch per unit.

A unit's ticket is a {name: bool tensor} map the driver stores in RUN/masks/level_NN.safetensors:
- "weights": weight masks (unstructured magnitude pruning);
- "channels": one keep vector per channel group (L1 filter norms, `lottery.channels`); every level runs the
  `fixed_plan` method and `prepare_start` turns the vectors into `StartPoint(plan=...)`, so the ticket is a
  physically smaller network from its first step (rewound weights restricted to the kept channels).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn

from prunekit.channels import ChannelPlan
from prunekit.config import RunConfig
from prunekit.errors import UserError
from prunekit.lottery.channels import group_scores, keep_vectors, plan_of, prune_channels
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

    def prepare_start(self, start: Any, probe: Any) -> Any:
        """The StartPoint a level trains from, given the one with the ticket in `masks` (unchanged for weights)."""
        return start

    def run_config(self, cfg: RunConfig) -> RunConfig:
        """The run config every level (and the probe) uses (unchanged for weights)."""
        return cfg

    def finished_state(self, data: Any, probe: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(full weights, ticket) at the end of a level, from its last CheckpointData."""
        return data.model, data.extra.get("masks", {})


@PRUNERS.register("weights")
class WeightPruner(LevelPruner):
    """Unstructured magnitude pruning of the remaining weights (`prunekit.weights.magnitude`)."""

    def prune(self, model: nn.Module, masks: dict[str, torch.Tensor], probe: Any) -> dict[str, torch.Tensor]:
        lot = self.lottery
        weights = prunable_weights(model, lot.exclude)
        check_names(lot.exclude, prunable_weights(model), "lottery.exclude")
        check_names(lot.layer_rates, weights, "lottery.layer_rates")
        return magnitude_masks(weights, masks, lot.rate, lot.scope, lot.layer_rates)


@PRUNERS.register("channels")
class ChannelPruner(LevelPruner):
    """Structured pruning of the remaining channels by L1 filter norm (`lottery.channels`); the ticket is one keep
    vector per channel group, trained as a materialized plan under the `fixed_plan` method."""

    def prune(self, model: nn.Module, masks: dict[str, torch.Tensor], probe: Any) -> dict[str, torch.Tensor]:
        lot, groups = self.lottery, probe.state.groups
        previous = plan_of(masks, groups)
        scores = group_scores(model, groups, previous, lot.exclude)
        plan = prune_channels(groups, previous, scores, lot.rate, lot.scope, lot.min_channels)
        return keep_vectors(plan, groups)

    def prepare_start(self, start: Any, probe: Any) -> Any:
        if start.masks is None:
            return start
        plan = plan_of(start.masks, probe.state.groups)
        plan.validate(probe.state.groups, self.lottery.min_channels)
        return dataclasses.replace(start, plan=plan, masks=None)

    def run_config(self, cfg: RunConfig) -> RunConfig:
        if cfg.method.name not in ("dense", "fixed_plan"):
            raise UserError(f"lottery.unit channels trains every level with method fixed_plan; the config's "
                            f"method is {cfg.method.name!r} (use dense)")
        cfg = copy.deepcopy(cfg)
        cfg.method.name, cfg.method.params = "fixed_plan", {"policy": self.lottery.policy}
        return cfg

    def finished_state(self, data: Any, probe: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The supernet's weights (the subnet's are synced into it at every epoch end; removed channels keep their
        start values) and the keep vectors of the plan in force."""
        weights = data.supernet if data.supernet is not None else data.model
        plan = ChannelPlan.from_json(data.state["plan"]) if data.state.get("plan") is not None else None
        return weights, keep_vectors(plan, probe.state.groups)


def build_pruner(lottery: LotteryConfig) -> LevelPruner:
    return PRUNERS.get(lottery.unit)(lottery)
