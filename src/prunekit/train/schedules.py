"""Learning-rate schedules as pure functions of the global step: resuming needs no scheduler object."""

from __future__ import annotations

import bisect
import math

from prunekit.config import ScheduleConfig


def learning_rate(step: int, steps_per_epoch: int, epochs: int, base_lr: float, cfg: ScheduleConfig) -> float:
    """The learning rate for optimizer step `step` (0-based) of a run of `epochs` epochs.

    Linear warm-up over `warmup_epochs` (from base_lr / warmup_steps up to base_lr), then
    - cosine: min_lr + (base_lr - min_lr) * (1 + cos(pi * progress)) / 2, progress over the post-warm-up steps;
    - multistep: base_lr * gamma ** (number of milestones (epochs) already reached);
    - constant: base_lr.
    """
    total = max(1, steps_per_epoch * epochs)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if cfg.name == "constant":
        return base_lr
    if cfg.name == "multistep":
        epoch = step // max(1, steps_per_epoch)
        return base_lr * cfg.gamma ** bisect.bisect_right(sorted(cfg.milestones), epoch)
    if cfg.name == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return cfg.min_lr + (base_lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    raise ValueError(f"unknown schedule {cfg.name!r}")
