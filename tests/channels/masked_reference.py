"""The independent reference for channel surgery: the full model with the plan's removed channels masked to zero.

It uses no slices, offsets or kept indices from prunekit: only, per group, the producer modules (every writer of
the group) and the plan. Which other tensor entries a removed channel reaches is found by a structural taint
probe: the producers write NaN into removed channels, channel-wise ops (ReLU, pooling, add, concat, BN, depthwise
conv) carry the NaN along, and every dense Conv/Linear records which input channels (or flattened columns) are
tainted and then replaces NaN by 0 (what the masked model feeds it), so the taint never leaks across channels.

The masked reference then multiplies producer outputs by the 0/1 mask and zeroes BN outputs on tainted channels
(BN's bias would otherwise resurrect a removed channel). The frozen elements for training are the producer rows,
consumer columns and BN entries of tainted channels; `MaskedTrainer` restores them, their optimizer state and the
removed BN running statistics after each optimizer step.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from prunekit.channels import ChannelGroup, ChannelPlan


def _channel_any(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    dim = dim % x.dim() if x.dim() else 0
    return x.any(dim=[d for d in range(x.dim()) if d != dim]) if x.dim() > 1 else x


def _channel_dim(module: nn.Module) -> int:
    """Linear and nn.LayerNorm read channels in the last dim; a LayerNorm subclass with its own forward (the zoo's
    LayerNorm2d), convs and BNs in dim 1."""
    if isinstance(module, nn.Linear) or (isinstance(module, nn.LayerNorm)
                                         and type(module).forward is nn.LayerNorm.forward):
        return -1
    return 1


def _is_dense(module: nn.Module) -> bool:
    """Mixes channels (Linear, ordinary or grouped conv); a depthwise conv maps channel c to channel c."""
    return isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and not (
        module.groups == module.in_channels == module.out_channels))


def _removed_index(groups: list[ChannelGroup], plan: ChannelPlan) -> dict[str, torch.Tensor]:
    """Producer -> output rows the plan removes. A group channel is one row of each producer, except for the
    channels of a grouped conv, where group channel c is row c of every conv group (checked by hand in
    test_groups.py); the producer's weight slice says which rows carry which channel."""
    removed = {}
    for group in groups:
        keep = set(plan.keep.get(group.name, range(group.size)))
        for producer in group.producers:
            (rows,) = [s for s in group.slices if (s.module, s.tensor, s.dim) == (producer, "weight", 0)]
            removed[producer] = torch.tensor([p for p, c in zip(rows.positions, rows.channels, strict=True)
                                              if c not in keep], dtype=torch.long)
    return removed


def taint(model: nn.Module, groups: list[ChannelGroup], plan: ChannelPlan,
          probe_inputs: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """module name -> (tainted input channels, tainted output channels) as boolean vectors."""
    probe = copy.deepcopy(model).eval()
    removed = _removed_index(groups, plan)
    found: dict[str, list[torch.Tensor]] = {}
    for name, module in probe.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear, _BatchNorm, nn.LayerNorm)):
            continue

        dense, dim = _is_dense(module) or isinstance(module, nn.LayerNorm), _channel_dim(module)

        def before(_m, inputs, name=name, dense=dense, dim=dim):
            (x,) = inputs
            found[name] = [_channel_any(torch.isnan(x), dim)]
            return (torch.nan_to_num(x, nan=0.0),) if dense else None

        def after(m, _inputs, output, name=name, dim=dim):
            gone = removed.get(name)
            if isinstance(m, nn.LayerNorm):  # a removed channel stays removed after the LayerNorm
                gone = found[name][0].nonzero().flatten()
            if gone is not None and gone.numel():
                output = output.movedim(dim, 0).clone()
                output[gone] = float("nan")
                output = output.movedim(0, dim)
            found[name].append(_channel_any(torch.isnan(output), dim))
            return output

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)
    with torch.no_grad():
        probe(probe_inputs)
    return {name: (pair[0], pair[1]) for name, pair in found.items()}


def install_masks(model: nn.Module, groups: list[ChannelGroup], plan: ChannelPlan,
                  probe_inputs: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Mask the plan's removed channels to zero in `model` (forward hooks; the model stays full size)."""
    tainted = taint(model, groups, plan, probe_inputs)
    removed = _removed_index(groups, plan)
    for name, module in model.named_modules():
        dim = _channel_dim(module)
        if isinstance(module, nn.LayerNorm) and tainted[name][0].any():
            kept = (~tainted[name][0]).nonzero().flatten()

            def norm_hook(m, inputs, output, kept=kept, dim=dim):  # LayerNorm over the kept channels only
                part = inputs[0].index_select(dim, kept).movedim(dim, -1)
                y = nn.functional.layer_norm(part, (len(kept),), m.weight[kept], m.bias[kept], m.eps)
                return torch.zeros_like(output).index_copy(dim % output.dim(), kept, y.movedim(-1, dim))

            module.register_forward_hook(norm_hook)
            continue
        if name in removed:
            mask = torch.ones(module.weight.shape[0], dtype=module.weight.dtype)
            mask[removed[name]] = 0.0
        elif isinstance(module, _BatchNorm):
            mask = (~tainted[name][0]).to(module.weight.dtype)
        else:
            continue

        def hook(_m, _inputs, output, mask=mask, dim=dim):
            shape = [1] * output.dim()
            shape[dim] = -1
            return output * mask.view(shape)

        module.register_forward_hook(hook)
    return tainted


def frozen_elements(model: nn.Module, tainted: dict[str, tuple[torch.Tensor, torch.Tensor]]
                    ) -> dict[str, torch.Tensor]:
    """Per parameter, the elements the subnet does not contain (rows, columns, BN entries of removed channels)."""
    frozen = {}
    for name, module in model.named_modules():
        if name not in tainted:
            continue
        tainted_in, tainted_out = tainted[name]
        weight = torch.zeros_like(module.weight, dtype=torch.bool)
        if isinstance(module, _BatchNorm):
            weight[tainted_in] = True
            bias = weight.clone()
        elif _is_dense(module):
            weight[tainted_out] = True
            if getattr(module, "groups", 1) > 1:  # column j reads input j of every conv group
                weight[:, tainted_in.view(module.groups, -1).any(0)] = True
            else:
                weight[:, tainted_in] = True
            bias = tainted_out.clone()
        else:  # depthwise conv: channel c reads input c and writes output c
            weight[tainted_in | tainted_out] = True
            bias = tainted_in | tainted_out
        frozen[f"{name}.weight"] = weight
        if getattr(module, "bias", None) is not None:
            frozen[f"{name}.bias"] = bias
    for name, param in model.named_parameters():
        frozen.setdefault(name, torch.zeros_like(param, dtype=torch.bool))
    return frozen


class MaskedTrainer:
    """Steps `optimizer` on the masked model and restores frozen elements, their state and removed BN stats."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 tainted: dict[str, tuple[torch.Tensor, torch.Tensor]]):
        self.model, self.optimizer = model, optimizer
        self.frozen = frozen_elements(model, tainted)
        self.norms = {n: (m, tainted[n][0]) for n, m in model.named_modules() if isinstance(m, _BatchNorm)}
        self.params = dict(model.named_parameters())

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        saved = {n: p.detach().clone() for n, p in self.params.items()}
        saved_state = {n: {k: v.clone() for k, v in self.optimizer.state[p].items() if torch.is_tensor(v)}
                       for n, p in self.params.items() if p in self.optimizer.state}
        saved_stats = {n: (m.running_mean.clone(), m.running_var.clone()) for n, (m, _) in self.norms.items()}
        self.optimizer.zero_grad()
        nn.functional.cross_entropy(self.model(inputs), targets).backward()
        self.optimizer.step()
        with torch.no_grad():
            for name, param in self.params.items():
                mask = self.frozen[name]
                param[mask] = saved[name][mask]
                for key, old in saved_state.get(name, {}).items():
                    if old.shape == param.shape:
                        self.optimizer.state[param][key][mask] = old[mask]
            for name, (module, removed) in self.norms.items():
                module.running_mean[removed] = saved_stats[name][0][removed]
                module.running_var[removed] = saved_stats[name][1][removed]
