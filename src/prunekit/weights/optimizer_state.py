"""Optimizer state at positions whose mask changes: zeroed, so a weight that (re)enters training starts without
the momentum or Adam moments of its past (RigL / SET: grown weights start at zero with zeroed state)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


@torch.no_grad()
def zero_changed_state_(optimizer: torch.optim.Optimizer, model: nn.Module,
                        old: Mapping[str, torch.Tensor], new: Mapping[str, torch.Tensor]) -> int:
    """Zero every per-element optimizer state entry (momentum_buffer, exp_avg, exp_avg_sq, ...) of `model`'s
    parameters where the mask differs between `old` and `new` (a missing mask counts as all True).

    Returns the number of positions that changed."""
    changed_total = 0
    for name, param in model.named_parameters():
        if name not in old and name not in new:
            continue
        before = old.get(name)
        after = new.get(name)
        before = before.to(param.device) if before is not None else torch.ones_like(param, dtype=torch.bool)
        after = after.to(param.device) if after is not None else torch.ones_like(param, dtype=torch.bool)
        changed = before != after
        count = int(changed.sum())
        if not count:
            continue
        changed_total += count
        for value in optimizer.state.get(param, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                value.masked_fill_(changed, 0)
    return changed_total
