"""Switch a model to eval or train mode for a block, then put every module's own train/eval flag back.

`model.train(was_training)` is not a restore: it sets every submodule to the same flag and so undoes a per-module
mode such as a BatchNorm frozen in eval mode inside a training model. These context managers save and restore
each module's `training` flag. Everything in prunekit that changes modes temporarily uses them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def restored_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Leave the modes to the block (e.g. a library that calls `model.eval()`), restore each module's after."""
    flags = [(module, module.training) for module in model.modules()]
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Switch `model` to eval mode for the block, then restore each module's own `training` flag."""
    with restored_modes(model):
        model.eval()
        yield model


@contextmanager
def train_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Switch `model` to training mode for the block, then restore each module's own `training` flag."""
    with restored_modes(model):
        model.train()
        yield model
