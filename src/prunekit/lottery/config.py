"""LotteryConfig: the settings of an IMP run, read from a preset's `lottery:` section (and `--set lottery.KEY=V`).

The run configuration (RunConfig) never sees this section: `load_lottery_config` strips it before the rest goes
through the ordinary config loading, so every level is an ordinary run with an ordinary config.yaml.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

from prunekit.config import RunConfig, apply_overrides, build_dataclass, read_yaml
from prunekit.config_checks import check_config
from prunekit.errors import UserError
from prunekit.methods.params import param

MODES = ("reset", "weight_rewind", "lr_rewind", "finetune")
CONTROLS = ("reinit", "random_prune")
UNITS = ("weights", "channels")


@dataclasses.dataclass
class LotteryConfig:
    """Iterative magnitude pruning (Frankle & Carbin 2019; OpenLTH `lottery`)."""

    unit: Literal["weights", "channels"] = param(
        "weights", "what a level prunes: 'weights' (unstructured magnitude masks) or 'channels' (L1 filter norms "
                   "over the channel groups; the ticket is a physically smaller network, method fixed_plan)")
    levels: int = param(3, "pruning levels after the dense level 0; density (1 - rate) ** levels")
    rate: float = param(0.2, "fraction of the remaining weights pruned per level")
    scope: Literal["global", "layer"] = param("global", "rank weights over all tensors ('global') or per tensor "
                                                        "(channels: over all groups, or per group)")
    layer_rates: dict[str, float] = param(help="own rates for tensors matching fnmatch patterns, e.g. "
                                               "{'fc.weight': 0.1} (the LTH LeNet output layer)", factory=dict)
    exclude: list[str] = param(help="weights (fnmatch patterns of parameter or module names) left dense, e.g. "
                                    "['fc'] as OpenLTH does for VGG and LeNet; channels: group names kept whole",
                               factory=list)
    policy: Literal["internal", "all"] = param("internal", "channels: the channel policy of the traced groups "
                                                           "('all' prunes residual streams too)")
    min_channels: int = param(1, "channels: no group keeps fewer channels than this")
    mode: Literal["reset", "weight_rewind", "lr_rewind", "finetune"] = param(
        "reset", "retraining after each pruning: reset (weights to init), weight_rewind (weights and LR to step "
                 "k), lr_rewind (trained weights, LR from step k), finetune (trained weights, final LR)")
    rewind_step: str = param("0it", "k for weight_rewind / lr_rewind / finetune ('500it', '2ep' or a fraction "
                                    "like '0.05'); retraining runs from step k to the end")
    finetune_lr: float | None = param(None, "finetune's constant LR (None: the schedule's LR at the last step)")
    controls: list[str] = param(help="controls trained at every level >= 1 next to the ticket: 'reinit' (the "
                                     "ticket's mask, random weights) and 'random_prune' (a random mask of the "
                                     "same per-tensor densities, the ticket's start weights)", factory=list)

    def __post_init__(self) -> None:
        if self.levels < 0:
            raise UserError(f"lottery.levels must be >= 0, got {self.levels}")
        if not 0.0 < self.rate < 1.0:
            raise UserError(f"lottery.rate must lie in (0, 1), got {self.rate}")
        for key, allowed, value in (("mode", MODES, self.mode), ("unit", UNITS, self.unit),
                                    ("scope", ("global", "layer"), self.scope),
                                    ("policy", ("internal", "all"), self.policy)):
            if value not in allowed:
                raise UserError(f"lottery.{key} must be one of {', '.join(allowed)}, got {value!r}")
        bad = [c for c in self.controls if c not in CONTROLS]
        if bad:
            raise UserError(f"lottery.controls: unknown control {bad[0]!r} (known: {', '.join(CONTROLS)})")
        if self.min_channels < 1:
            raise UserError(f"lottery.min_channels must be >= 1, got {self.min_channels}")
        if self.unit == "channels" and self.layer_rates:
            raise UserError("lottery.layer_rates applies to unit weights only (channels: use scope 'layer' or "
                            "exclude)")
        if self.finetune_lr is not None and self.finetune_lr < 0:
            raise UserError(f"lottery.finetune_lr must be >= 0, got {self.finetune_lr}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(`lottery.*` overrides, the others)."""
    lottery = [o for o in overrides if o.strip().startswith("lottery.")]
    return lottery, [o for o in overrides if o not in lottery]


def load_lottery_config(path: str | os.PathLike[str], overrides: list[str] | None = None
                        ) -> tuple[RunConfig, LotteryConfig]:
    """The run configuration (without its `lottery:` section) and the lottery settings of a preset."""
    raw = read_yaml(path)
    section = raw.pop("lottery", None) or {}
    if not isinstance(section, dict):
        raise UserError(f"{path}: the 'lottery' section must be a mapping")
    lottery_overrides, others = split_overrides(list(overrides or []))
    raw = apply_overrides(raw, others)
    raw.setdefault("name", Path(path).stem)
    cfg = check_config(build_dataclass(RunConfig, raw))
    section = apply_overrides({"lottery": section}, lottery_overrides)["lottery"]
    return cfg, build_dataclass(LotteryConfig, section, prefix="lottery.")
