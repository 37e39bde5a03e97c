"""Optimizer state at positions whose mask changes: zeroed, so a weight that (re)enters training starts without
the momentum or Adam moments of its past (RigL / SET: grown weights start at zero with zeroed state)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def live_state_by_name(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, dict[str, Any]]:
    """The optimizer's own per-parameter state dicts keyed by parameter name (not copies: changes apply)."""
    return {name: optimizer.state[p] for name, p in model.named_parameters() if p in optimizer.state}


@torch.no_grad()
def zero_changed_state_(state: Mapping[str, Mapping[str, Any]], old: Mapping[str, torch.Tensor],
                        new: Mapping[str, torch.Tensor]) -> int:
    """Zero, in place, every per-element entry (momentum_buffer, exp_avg, exp_avg_sq, ...) of a by-name optimizer
    state where the parameter's mask differs between `old` and `new` (a missing mask counts as all True).

    Returns the number of positions that changed."""
    changed_total = 0
    for name in set(old) | set(new):
        shape = tuple((new[name] if name in new else old[name]).shape)
        before = old[name].cpu() if name in old else torch.ones(shape, dtype=torch.bool)
        after = new[name].cpu() if name in new else torch.ones(shape, dtype=torch.bool)
        changed = before != after
        count = int(changed.sum())
        if not count:
            continue
        changed_total += count
        for value in state.get(name, {}).values():
            if isinstance(value, torch.Tensor) and tuple(value.shape) == shape:
                value.masked_fill_(changed.to(value.device), 0)
    return changed_total
