"""Parameter counts."""

from __future__ import annotations

from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of parameters (each shared tensor counted once), trainable or not."""
    return sum(p.numel() for p in model.parameters())


def count_nonzero_params(model: nn.Module) -> int:
    """Number of parameter entries that are not exactly zero (the size of a weight-pruned model)."""
    return sum(int((p != 0).sum()) for p in model.parameters())
