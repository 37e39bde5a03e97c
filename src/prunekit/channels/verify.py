"""The numerical check: a materialized subnet must compute what the masked supernet computes (DESIGN.md's contract).

The *masked supernet* is a float64 copy of the supernet whose modules that own a group's channels (producers,
depthwise convs, BatchNorms, LayerNorms, PReLUs) output zeros at the plan's removed channels; a LayerNorm over
channels normalises over the kept channels only (a removed channel is absent, not a zero). Everything between
those modules is the user's own code, untouched, so a group the graph engine mapped wrongly (an op that mixes
channels, an index mapping that is off, a layer it never saw) shows up as a difference or as a subnet that fails.

The copy's Conv/Linear/norm parameters and BN statistics are redrawn at random (seeded) before the comparison: a
layer whose real weights are zero (zero-initialised residual BNs, layer scales of 1e-6) would hide a wrong group.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from prunekit.channels.groups_base import ChannelGroup
from prunekit.channels.plan import ChannelPlan
from prunekit.channels.surgery import materialize
from prunekit.errors import UserError

TOLERANCE = 1e-8  # max |subnet - masked| / (1 + max |masked|); float64 rounding is ~1e-14 on these models


def _randomize(model: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)

    def draw(t: torch.Tensor, low: float, high: float) -> None:
        t.copy_(low + (high - low) * torch.rand(t.shape, generator=generator, dtype=t.dtype))

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (_ConvNd, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator, dtype=module.weight.dtype)
                                    / fan_in ** 0.5)
                if module.bias is not None:
                    draw(module.bias, -0.2, 0.2)
            elif isinstance(module, (_BatchNorm, nn.LayerNorm)):
                if getattr(module, "weight", None) is not None:
                    draw(module.weight, 0.5, 1.5)
                if getattr(module, "bias", None) is not None:
                    draw(module.bias, -0.2, 0.2)
                if isinstance(module, _BatchNorm) and module.running_mean is not None:
                    draw(module.running_mean, -0.1, 0.1)
                    draw(module.running_var, 0.5, 1.5)


def layer_norm_channel_dim(module: nn.LayerNorm, x: torch.Tensor) -> int | None:
    """The dim a (possibly subclassed, e.g. LayerNorm2d) LayerNorm normalises, found by comparing its output with
    `layer_norm` over each candidate dim; None when neither the last dim nor dim 1 reproduces it."""
    with torch.no_grad():
        y = module.forward(x)  # not module(x): this also runs inside a forward hook of `module`
        for dim in (x.dim() - 1, 1):
            if x.shape[dim] != module.weight.shape[0]:
                continue
            z = nn.functional.layer_norm(x.movedim(dim, -1), module.normalized_shape, module.weight, module.bias,
                                         module.eps).movedim(-1, dim)
            if z.shape == y.shape and torch.allclose(z, y, rtol=1e-6, atol=1e-8):
                return dim
    return None


def _output_dim(module: nn.Module, output: torch.Tensor) -> int:
    return output.dim() - 1 if isinstance(module, nn.Linear) else 1


def removed_positions(groups: Sequence[ChannelGroup], plan: ChannelPlan) -> dict[str, torch.Tensor]:
    """module -> output positions the plan removes, for every module whose weight (or running mean) dim 0 is a
    group's channels: the outputs the masked supernet zeroes."""
    gone: dict[str, set[int]] = defaultdict(set)
    for group in groups:
        keep = plan.keep.get(group.name)
        if keep is None or len(keep) == group.size:
            continue
        keep_set = set(keep)
        for piece in group.slices:
            if piece.dim == 0 and piece.tensor in ("weight", "running_mean"):
                gone[piece.module].update(p for p, c in zip(piece.positions, piece.channels, strict=True)
                                          if c not in keep_set)
    return {name: torch.tensor(sorted(p), dtype=torch.long) for name, p in gone.items() if p}


def install_masks(model: nn.Module, removed: dict[str, torch.Tensor]) -> list:
    """Forward hooks that make `model` the masked supernet for `removed` (see the module docstring)."""
    handles = []
    for name, index in removed.items():
        module = model.get_submodule(name)
        if isinstance(module, nn.LayerNorm):
            def hook(m, inputs, output, index=index):
                return _kept_layer_norm(m, inputs[0], output, index)
        else:
            def hook(m, _inputs, output, index=index):
                return output.index_fill(_output_dim(m, output), index.to(output.device), 0.0)
        handles.append(module.register_forward_hook(hook))
    return handles


def _kept_layer_norm(module: nn.LayerNorm, x: torch.Tensor, output: torch.Tensor, removed: torch.Tensor):
    dim = layer_norm_channel_dim(module, x)
    if dim is None:
        raise UserError(f"LayerNorm {type(module).__name__} normalises neither the last dim nor dim 1")
    size = module.weight.shape[0]
    kept = torch.tensor([i for i in range(size) if i not in set(removed.tolist())], dtype=torch.long)
    part = x.index_select(dim, kept).movedim(dim, -1)
    bias = module.bias[kept] if module.bias is not None else None
    y = nn.functional.layer_norm(part, (len(kept),), module.weight[kept], bias, module.eps).movedim(-1, dim)
    return torch.zeros_like(output).index_copy(dim, kept, y)


@contextmanager
def _native_kernels() -> Iterator[None]:
    """oneDNN's float64 convolutions take seconds per call on CPU where the native kernels take milliseconds."""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


def _flat(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _flat(item)]
    return []


class PlanChecker:
    """Compares subnets of one supernet with its masked copy (float64, random weights, random inputs)."""

    def __init__(self, supernet: nn.Module, example_inputs: torch.Tensor, seed: int = 0) -> None:
        self.reference = copy.deepcopy(supernet).double().eval()
        _randomize(self.reference, seed)
        shape = (min(2, example_inputs.shape[0]), *example_inputs.shape[1:]) if example_inputs.dim() > 1 \
            else tuple(example_inputs.shape)
        generator = torch.Generator().manual_seed(seed + 1)
        if example_inputs.is_floating_point():
            self.inputs = torch.randn(shape, generator=generator, dtype=torch.float64)
        else:
            self.inputs = example_inputs[: shape[0]].clone()

    def difference(self, groups: Sequence[ChannelGroup], plan: ChannelPlan) -> tuple[float, str | None]:
        """(max |subnet - masked| / (1 + max |masked|), None) or (inf, why the subnet cannot be compared)."""
        with _native_kernels(), torch.no_grad():
            try:
                subnet = materialize(self.reference, plan, list(groups)).eval()
                got = _flat(subnet(self.inputs))
            except Exception as error:  # the subnet itself does not run: the groups are wrong
                text = (str(error).strip().splitlines() or [""])[0][:120]
                return float("inf"), f"the pruned subnet fails ({type(error).__name__}: {text})"
            handles = install_masks(self.reference, removed_positions(groups, plan))
            try:
                expected = _flat(self.reference(self.inputs))
            finally:
                for handle in handles:
                    handle.remove()
        if len(got) != len(expected) or any(a.shape != b.shape for a, b in zip(got, expected, strict=False)):
            return float("inf"), "the pruned subnet's outputs have other shapes than the supernet's"
        scale = 1.0 + max((float(e.abs().max()) for e in expected if e.numel()), default=0.0)
        diff = max((float((a - b).abs().max()) for a, b in zip(got, expected, strict=True) if a.numel()), default=0.0)
        return diff / scale, None


def check_plan_matches(supernet: nn.Module, groups: Sequence[ChannelGroup], plan: ChannelPlan,
                       example_inputs: torch.Tensor, tolerance: float = TOLERANCE, seed: int = 0) -> float:
    """Raise a UserError unless the subnet `plan` gives computes what the masked supernet computes.

    Works on a float64 copy with random weights (the supernet is untouched) and random inputs shaped like
    `example_inputs`; returns the relative difference (max |subnet - masked| / (1 + max |masked|)).
    """
    relative, failure = PlanChecker(supernet, example_inputs, seed).difference(groups, plan)
    if failure is not None or not relative <= tolerance:
        named = [g.name for g in groups if g.name in plan.keep and len(plan.keep[g.name]) < g.size]
        what = failure or f"it differs from the masked supernet by {relative:.3g} (relative; tolerance {tolerance:g})"
        raise UserError(f"channel plan refused: {what}; groups pruned: {', '.join(named[:6]) or 'none'}"
                        f"{' ...' if len(named) > 6 else ''}")
    return relative


def probe_plan(group: ChannelGroup, generator: torch.Generator) -> list[int]:
    """About half of the group's channels, at random (at least one kept and one removed)."""
    count = max(1, min(group.size - 1, group.size // 2))
    return sorted(torch.randperm(group.size, generator=generator)[:count].tolist())
