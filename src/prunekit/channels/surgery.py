"""materialize (supernet + plan -> physically smaller subnet) and absorb (subnet -> supernet at the kept indices).

Correctness contract (DESIGN.md): the subnet computes what the supernet computes with the plan's removed channels
zeroed, and training the subnet then absorbing it equals training the supernet with those channels masked and
frozen. Removed channels keep their most recently used values in the supernet (the "MRU bank").
"""

from __future__ import annotations

import copy
from collections import defaultdict

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from prunekit.channels.groups_base import ChannelGroup, is_depthwise
from prunekit.channels.plan import ChannelPlan
from prunekit.errors import UserError

# (module name, tensor name) -> {dim: kept positions (sorted LongTensor)}
KeptIndices = dict[tuple[str, str], dict[int, torch.Tensor]]


def kept_indices(model: nn.Module, groups: list[ChannelGroup], plan: ChannelPlan) -> KeptIndices:
    """For every tensor the plan shrinks, the positions it keeps along each sliced dim."""
    removed: dict[tuple[str, str, int], set[int]] = defaultdict(set)
    for group in groups:
        keep = plan.keep.get(group.name)
        if keep is None or len(keep) == group.size:
            continue
        keep_set = set(keep)
        for piece in group.slices:
            target = removed[(piece.module, piece.tensor, piece.dim)]
            target.update(p for p, c in zip(piece.positions, piece.channels, strict=True) if c not in keep_set)
    result: KeptIndices = defaultdict(dict)
    for (module_name, tensor_name, dim), gone in removed.items():
        if not gone:
            continue
        extent = getattr(model.get_submodule(module_name), tensor_name).shape[dim]
        kept = [i for i in range(extent) if i not in gone]
        result[(module_name, tensor_name)][dim] = torch.tensor(kept, dtype=torch.long)
    return dict(result)


def select(tensor: torch.Tensor, dims: dict[int, torch.Tensor]) -> torch.Tensor:
    """tensor restricted to the kept positions along each dim (a new tensor)."""
    out = tensor
    for dim, index in sorted(dims.items()):
        out = out.index_select(dim, index.to(tensor.device))
    return out


def scatter_(full: torch.Tensor, part: torch.Tensor, dims: dict[int, torch.Tensor]) -> None:
    """Write `part` into `full` at the kept positions (in place); the other positions are left untouched."""
    if not dims:
        full.copy_(part)
        return
    (dim, index), *rest = sorted(dims.items())
    index = index.to(full.device)
    if rest:
        inner = full.index_select(dim, index)
        scatter_(inner, part, dict(rest))
        part = inner
    full.index_copy_(dim, index, part)


def _update_shape_attributes(module: nn.Module, was_depthwise: bool) -> None:
    if isinstance(module, _ConvNd):
        out_channels = module.weight.shape[0]
        if was_depthwise:
            module.in_channels = module.out_channels = module.groups = out_channels
        else:
            module.out_channels = out_channels
            module.in_channels = module.weight.shape[1] * module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, _BatchNorm):
        reference = module.running_mean if module.running_mean is not None else module.weight
        module.num_features = reference.shape[0]
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = (module.weight.shape[0],)
    elif isinstance(module, nn.PReLU):
        module.num_parameters = module.weight.shape[0]


def materialize(supernet: nn.Module, plan: ChannelPlan, groups: list[ChannelGroup]) -> nn.Module:
    """A new, physically smaller copy of `supernet` keeping the plan's channels (supernet untouched).

    Same module names, training mode, dtype and device as the supernet; each Conv/BN/Linear has its real smaller
    shape and updated in/out/num_features/groups attributes.
    """
    plan.validate(groups, min_channels=1)
    kept = kept_indices(supernet, groups, plan)
    memo: dict[int, object] = {}
    depthwise: dict[str, bool] = {}
    for (module_name, tensor_name), dims in kept.items():
        module = supernet.get_submodule(module_name)
        depthwise[module_name] = isinstance(module, _ConvNd) and is_depthwise(module)
        tensor = getattr(module, tensor_name)
        smaller = select(tensor.detach(), dims).clone()
        if isinstance(tensor, nn.Parameter):
            smaller = nn.Parameter(smaller, requires_grad=tensor.requires_grad)
        memo[id(tensor)] = smaller  # deepcopy picks the sliced tensor instead of copying the full one
    subnet = copy.deepcopy(supernet, memo)
    for module_name, was_depthwise in depthwise.items():
        _update_shape_attributes(subnet.get_submodule(module_name), was_depthwise)
    return subnet


def _named_state(model: nn.Module) -> dict[str, torch.Tensor]:
    state = dict(model.named_parameters())
    state.update(dict(model.named_buffers()))
    return state


def expected_shape(full: torch.Tensor, dims: dict[int, torch.Tensor]) -> tuple[int, ...]:
    shape = list(full.shape)
    for dim, index in dims.items():
        shape[dim] = index.numel()
    return tuple(shape)


def absorb(subnet: nn.Module, supernet: nn.Module, plan: ChannelPlan, groups: list[ChannelGroup]) -> None:
    """Write the subnet's parameters and buffers back into the supernet at the kept indices (in place).

    Removed channels keep their previous (most recently used) values. num_batches_tracked and every tensor the
    plan does not shrink are copied whole.
    """
    kept = kept_indices(supernet, groups, plan)
    sub_state = _named_state(subnet)
    with torch.no_grad():
        for name, full in _named_state(supernet).items():
            if name not in sub_state:
                raise UserError(f"subnet has no tensor {name!r}; was it built from this supernet?")
            part = sub_state[name]
            module_name, _, tensor_name = name.rpartition(".")
            dims = kept.get((module_name, tensor_name), {})
            if tuple(part.shape) != expected_shape(full, dims):
                raise UserError(f"subnet tensor {name!r} has shape {tuple(part.shape)}, the plan expects "
                                f"{expected_shape(full, dims)}")
            scatter_(full, part.detach().to(device=full.device, dtype=full.dtype), dims)
