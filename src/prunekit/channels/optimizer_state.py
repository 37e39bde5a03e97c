"""Optimizer state across materialize/absorb, keyed by parameter qualified name.

A per-element state entry (SGD momentum_buffer, Adam/AdamW exp_avg, exp_avg_sq, max_exp_avg_sq) has the
parameter's shape and is sliced and written back exactly like the parameter. Anything else (Adam's `step`, a
scalar) is kept as it is. Caveat: Adam's `step` is one counter per parameter tensor, so after absorb the removed
channels share the kept channels' step count while their moments are from the last time they were used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from prunekit.channels.groups import ChannelGroup
from prunekit.channels.plan import ChannelPlan
from prunekit.channels.surgery import expected_shape, kept_indices, scatter_, select
from prunekit.errors import UserError

OptimizerState = dict[str, dict[str, Any]]


def _copy_value(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def _parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return dict(model.named_parameters())


def _is_per_element(value: Any, shape: tuple[int, ...]) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and tuple(value.shape) == shape


def slice_optimizer_state(state: OptimizerState, supernet: nn.Module, plan: ChannelPlan,
                          groups: list[ChannelGroup]) -> OptimizerState:
    """The supernet's by-name optimizer state restricted to the plan's kept channels (new tensors)."""
    kept = kept_indices(supernet, groups, plan)
    params = _parameters(supernet)
    sliced: OptimizerState = {}
    for name, entries in state.items():
        if name not in params:
            raise UserError(f"optimizer state names {name!r}, which is not a parameter of the supernet")
        full_shape = tuple(params[name].shape)
        module_name, _, tensor_name = name.rpartition(".")
        dims = kept.get((module_name, tensor_name), {})
        sliced[name] = {
            key: select(value.detach(), dims).clone() if _is_per_element(value, full_shape) else _copy_value(value)
            for key, value in entries.items()
        }
    return sliced


def absorb_optimizer_state(sub_state: OptimizerState, full_state: OptimizerState, supernet: nn.Module,
                           plan: ChannelPlan, groups: list[ChannelGroup]) -> None:
    """Write the subnet's by-name optimizer state into `full_state` (in place) at the kept indices.

    Removed channels keep their previous state; a per-element entry the supernet never had starts at zero.
    """
    kept = kept_indices(supernet, groups, plan)
    params = _parameters(supernet)
    for name, entries in sub_state.items():
        if name not in params:
            raise UserError(f"optimizer state names {name!r}, which is not a parameter of the supernet")
        param = params[name]
        module_name, _, tensor_name = name.rpartition(".")
        dims = kept.get((module_name, tensor_name), {})
        sub_shape = expected_shape(param, dims)
        target = full_state.setdefault(name, {})
        for key, value in entries.items():
            if _is_per_element(value, sub_shape) and param.dim() > 0:
                full = target.get(key)
                if not isinstance(full, torch.Tensor) or tuple(full.shape) != tuple(param.shape):
                    full = torch.zeros(param.shape, dtype=value.dtype, device=value.device)
                    target[key] = full
                scatter_(full, value.detach().to(device=full.device, dtype=full.dtype), dims)
            elif isinstance(value, torch.Tensor) and value.dim() > 0:
                raise UserError(f"optimizer state {name!r}/{key!r} has shape {tuple(value.shape)}, "
                                f"expected {sub_shape}")
            else:
                target[key] = _copy_value(value)


def optimizer_state_by_name(optimizer: torch.optim.Optimizer, model: nn.Module) -> OptimizerState:
    """The optimizer's per-parameter state keyed by the parameter's qualified name in `model` (copies)."""
    names = {id(p): n for n, p in model.named_parameters()}
    state: OptimizerState = {}
    for param_group in optimizer.param_groups:
        for param in param_group["params"]:
            entries = optimizer.state.get(param)
            if not entries:
                continue
            if id(param) not in names:
                raise UserError("the optimizer holds a parameter that is not part of the model")
            state[names[id(param)]] = {key: _copy_value(value) for key, value in entries.items()}
    return state


def load_optimizer_state_by_name(optimizer: torch.optim.Optimizer, model: nn.Module,
                                 state: OptimizerState) -> None:
    """Install by-name state into `optimizer`, whose param_groups must hold `model`'s parameters."""
    params = _parameters(model)
    in_optimizer = {id(p) for param_group in optimizer.param_groups for p in param_group["params"]}
    for name, entries in state.items():
        param = params.get(name)
        if param is None:
            raise UserError(f"optimizer state names {name!r}, which is not a parameter of the model")
        if id(param) not in in_optimizer:
            raise UserError(f"parameter {name!r} is not in the optimizer's param_groups")
        installed: dict[str, Any] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                if tuple(value.shape) != tuple(param.shape):
                    raise UserError(f"optimizer state {name!r}/{key!r} has shape {tuple(value.shape)}, "
                                    f"the parameter has {tuple(param.shape)}")
                installed[key] = value.detach().clone().to(device=param.device)
            else:
                installed[key] = _copy_value(value)
        optimizer.state[param] = installed


def zero_channel_state_(state: OptimizerState, groups: Sequence[ChannelGroup],
                        channels: dict[str, list[int]]) -> int:
    """Zero, in place, every per-element entry (SGD momentum, Adam moments) of a full-width by-name optimizer
    state (SupernetState.bank_state) at the given channels of each group: every position that carries one of them
    (producers' output rows, the norms' scale and shift, consumers' input columns). Scalar entries (Adam's `step`)
    are left alone. Returns the number of elements zeroed.

    CHEX's code masks a pruned channel's output rows, BN scale and shift and the consumers' input columns after
    every step but not the momentum; with zero weights and no gradient every one of these entries decays as mu^k,
    so the channel regrows from about zero. prunekit's bank keeps its state from the moment it left."""
    by_name = {g.name: g for g in groups}
    zeroed = 0
    for name, chosen in channels.items():
        wanted = set(chosen)
        for piece in by_name[name].slices:
            positions = [p for p, c in zip(piece.positions, piece.channels, strict=True) if c in wanted]
            entries = state.get(f"{piece.module}.{piece.tensor}")
            if not positions or not entries:
                continue
            for value in entries.values():
                if isinstance(value, torch.Tensor) and value.dim() > piece.dim:
                    index = torch.tensor(positions, dtype=torch.long, device=value.device)
                    value.index_fill_(piece.dim, index, 0)
                    zeroed += value.numel() // value.shape[piece.dim] * len(positions)
    return zeroed
