"""Optimizers built from `OptimConfig` (with an option to exclude BN parameters and biases from weight decay),
and the flat safetensors form of name-keyed optimizer state (see prunekit.channels.optimizer_state)."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.channels.optimizer_state import OptimizerState
from prunekit.config import OptimConfig


def parameter_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """One group with weight decay; a second without for 1-d parameters (BN scales/shifts, biases) when
    `decay_bn_and_bias` is False. Groups are built in `named_parameters()` order, so the optimizer's parameter
    order is the same for a supernet and any subnet materialized from it."""
    if cfg.decay_bn_and_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": cfg.weight_decay}]
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    return [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, cfg)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    raise ValueError(f"unknown optimizer {cfg.name!r}")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def flatten_optimizer_state(state: OptimizerState) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, float]]]:
    """Split name-keyed state into tensors ("param/key") for safetensors and plain numbers for JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, float]] = {}
    for name, entry in state.items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{name}/{key}"] = value
            else:
                scalars.setdefault(name, {})[key] = value
    return tensors, scalars


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor],
                              scalars: dict[str, dict[str, float]]) -> OptimizerState:
    state: OptimizerState = {}
    for flat, value in tensors.items():
        name, key = flat.rsplit("/", 1)
        state.setdefault(name, {})[key] = value
    for name, entry in scalars.items():
        state.setdefault(name, {}).update(entry)
    return state
