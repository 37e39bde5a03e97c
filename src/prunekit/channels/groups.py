"""Channel groups: the tensor slices that share one channel index space, discovered by tracing the model.

Torch-Pruning's DependencyGraph is the graph engine: it traces the model through autograd and, for a producer's
output channels, lists every coupled (module, pruning function, indices) item, with index mappings through
concatenation (offsets), flatten (one channel -> H*W columns of a Linear) and residual adds. This module turns each
of those groups into plain data (`ChannelSlice`: module, tensor, dim, positions, group channel of each position)
and decides whether the group may shrink. Everything that edits tensors lives in `surgery.py`.

A group is *blocked* (never returned by `channel_groups`, shown with its reason by `inspect_rows`) when it touches
the network output (classifier rows), the network input, a grouped (non-depthwise) convolution, channel padding,
a channel-reordering op, or an index mapping we cannot verify. Modules that own parameters or buffers and are not
Conv1d/2d/3d, Linear or BatchNorm raise a `UserError`: they are never silently mis-pruned.
"""

from __future__ import annotations

import math
import weakref
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from prunekit.errors import UserError
from prunekit.measure import eval_mode, restored_modes

POLICIES = ("internal", "all")

# Autograd ops that move values across channels; Torch-Pruning would treat them as element-wise.
_CHANNEL_MIXING_OPS = ("Permute", "Transpose", "PixelShuffle", "PixelUnshuffle", "ChannelShuffle", "Roll", "Flip",
                       "Index", "Gather", "Unfold", "Repeat", "Unknown")


@dataclass(frozen=True)
class ChannelSlice:
    """The positions of `module.tensor` along `dim` that carry this group's channels.

    `positions[i]` carries group channel `channels[i]` (several positions per channel after a flatten; positions
    offset by the concatenation offset when the group is concatenated with others).
    """

    module: str
    tensor: str
    dim: int
    positions: tuple[int, ...]
    channels: tuple[int, ...]


@dataclass(frozen=True)
class ChannelGroup:
    """One prunable channel index space (see the module docstring).

    name: the first producer in `model.named_modules()` order. producers: modules whose output channels are this
    group (convs, linears and depthwise convs that carry the group through). consumers: modules whose input channels
    read it. norms: BatchNorms on it. bn: the BatchNorm directly after the first producer (its gamma is the BN scale
    criterion), or None. internal: exactly one non-depthwise producer (so not a residual stream; REPrune's rule).
    macs_share: the dense MACs of the producers and consumers divided by the model's conv+linear MACs, i.e. the
    share of the model's MACs whose cost scales with this group's width (an upper bound on what pruning it saves).
    """

    name: str
    size: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    norms: tuple[str, ...]
    bn: str | None
    internal: bool
    macs_share: float
    slices: tuple[ChannelSlice, ...] = field(repr=False, default=())

    @property
    def norm_layers(self) -> tuple[str, ...]:
        """The BatchNorms on the group: `bn` (the one after the first producer) first, then the others."""
        first = (self.bn,) if self.bn is not None else ()
        return first + tuple(n for n in self.norms if n != self.bn)


@dataclass
class GroupAnalysis:
    """A traced group with the reason it cannot be pruned (None when it can)."""

    group: ChannelGroup
    blocked: str | None


def is_depthwise(conv: _ConvNd) -> bool:
    """A depthwise conv: every channel is its own group and maps to itself (groups == in == out > 1).

    A channel-multiplier conv (groups == in_channels, out_channels = k * in_channels, k > 1) is NOT depthwise
    here: it is a grouped conv (channel groups through it are blocked; the group lasso groups it as one)."""
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def is_plain_weight_layer(module: nn.Module) -> bool:
    """A Conv (not depthwise) or a Linear: the layers whose weights define what a channel reads and writes.

    Depthwise convs only carry each channel through; per-channel criteria (filter norms, sparsity) skip them."""
    if isinstance(module, _ConvNd):
        return not is_depthwise(module)
    return isinstance(module, nn.Linear)


def unsupported_layers(model: nn.Module) -> list[tuple[str, str]]:
    """(name, type) of every module that owns parameters or buffers that we do not know how to slice."""
    found = []
    for name, module in model.named_modules():
        owns_state = any(True for _ in module.parameters(recurse=False)) or any(
            True for _ in module.buffers(recurse=False))
        if not owns_state:
            continue
        if isinstance(module, _ConvNd) and not module.transposed:
            continue
        if isinstance(module, (nn.Linear, _BatchNorm)):
            continue
        found.append((name, type(module).__name__))
    return found


def raise_if_unsupported(model: nn.Module) -> None:
    found = unsupported_layers(model)
    if found:
        listed = ", ".join(f"{name!r} ({kind})" for name, kind in found[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise UserError(f"unsupported layer(s) for channel pruning: {listed}{more}; prunekit slices only "
                        "Conv1d/2d/3d, Linear and BatchNorm modules")


def channel_groups(model: nn.Module, example_inputs: torch.Tensor, policy: str = "all") -> list[ChannelGroup]:
    """The prunable channel groups of `model` under `policy` ("internal" or "all"), in named_modules order."""
    if policy not in POLICIES:
        raise UserError(f"unknown channel policy {policy!r}; choose one of {', '.join(POLICIES)}")
    raise_if_unsupported(model)
    groups = [a.group for a in analyse_groups(model, example_inputs) if a.blocked is None]
    if policy == "internal":
        groups = [g for g in groups if g.internal]
    return groups


@contextmanager
def _tracing_state(model: nn.Module) -> Iterator[None]:
    """Torch-Pruning switches the model to eval and needs grads: restore modes and requires_grad afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        with restored_modes(model), torch.enable_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _flatten_outputs(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _flatten_outputs(item)]
    return []


def forward_profile(model: nn.Module, example_inputs: torch.Tensor) -> tuple[dict[nn.Module, float], set[nn.Module]]:
    """Per-sample MACs of every Conv and Linear, and the Conv/Linear/BN modules whose output tensor is returned by
    the model (one eval-mode forward)."""
    macs: dict[nn.Module, float] = defaultdict(float)
    produced: dict[nn.Module, weakref.ref] = {}
    batch = example_inputs.shape[0] if example_inputs.dim() > 1 else 1

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(output, torch.Tensor):
            produced[module] = weakref.ref(output)
        if isinstance(module, _ConvNd):
            macs[module] += output.numel() / batch * (module.in_channels // module.groups) * math.prod(
                module.kernel_size)
        elif isinstance(module, nn.Linear):
            macs[module] += output.numel() / batch * module.in_features

    kinds = (_ConvNd, nn.Linear, _BatchNorm)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        with eval_mode(model), torch.no_grad():
            outputs = _flatten_outputs(model(example_inputs))
    finally:
        for handle in handles:
            handle.remove()
    output_ids = {id(t) for t in outputs}
    returned = {m for m, ref in produced.items() if ref() is not None and id(ref()) in output_ids}
    return macs, returned


def _tensor_slices(module: nn.Module, name: str, role: str, positions: list[int],
                   channels: list[int]) -> list[ChannelSlice]:
    """Slices of the tensors of `module` for one group item; role is "out", "in" or "norm"."""
    if role == "norm":
        tensors = [("weight", 0), ("bias", 0), ("running_mean", 0), ("running_var", 0)]
    elif role == "out":
        tensors = [("weight", 0), ("bias", 0)]
    else:
        tensors = [("weight", 1)]
    result = []
    for tensor_name, dim in tensors:
        if getattr(module, tensor_name, None) is None:
            continue
        result.append(ChannelSlice(name, tensor_name, dim, tuple(positions), tuple(channels)))
    return result


def _op_block_reason(node: tp.dependency.Node, input_ids: set[int]) -> str | None:
    """Why a non-module node of the traced graph cannot carry a pruned group (None when it can)."""
    if node.type == tp.ops.OPTYPE.OUTPUT:
        return "network output"
    grad_fn = node.grad_fn
    for next_fn, _ in getattr(grad_fn, "next_functions", ()):
        if next_fn is not None and id(getattr(next_fn, "variable", None)) in input_ids:
            return "joined with the network input"
    op_name = grad_fn.name() if hasattr(grad_fn, "name") else "Unknown"
    if "ConstantPadNd" in op_name:
        pad = tuple(getattr(grad_fn, "_saved_pad", ()))
        ndim = len(getattr(grad_fn, "_saved_self_sym_sizes", ())) or 4
        channel_pair = pad[2 * (ndim - 2): 2 * (ndim - 2) + 2]
        if len(pad) > 2 * (ndim - 2) and any(int(p) != 0 for p in channel_pair):
            return "channel padding (option-A shortcut)"
        return None
    if node.type == tp.ops.OPTYPE.ELEMENTWISE and any(op in op_name for op in _CHANNEL_MIXING_OPS):
        return f"channel-mixing operation {op_name}"
    return None


def _call(model: nn.Module, inputs: torch.Tensor) -> object:
    return model(inputs)  # Torch-Pruning's default would unpack the batch as positional arguments


def analyse_groups(model: nn.Module, example_inputs: torch.Tensor) -> list[GroupAnalysis]:
    """Every traced group (root = each conv/linear not yet covered, in named_modules order), blocked or not."""
    names = {module: name for name, module in model.named_modules()}
    order = {name: i for i, name in enumerate(names.values())}
    example_inputs = example_inputs[:1]  # one sample is enough to trace the structure and count per-sample MACs
    inputs = example_inputs.detach().clone().requires_grad_(True)
    with _tracing_state(model):
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=inputs, forward_fn=_call, verbose=False)
    param_names = {id(p): n for n, p in model.named_parameters()}
    macs, returned = forward_profile(model, example_inputs)
    total_macs = sum(macs.values()) or 1.0

    covered: set[nn.Module] = set()
    analyses: list[GroupAnalysis] = []
    for root in names:
        if root in covered or root not in graph.module2node or not isinstance(root, (_ConvNd, nn.Linear)):
            continue
        pruner = graph.get_pruner_of_module(root)
        size = pruner.get_out_channels(root)
        tp_group = graph.get_pruning_group(root, pruner.prune_out_channels, list(range(size)))
        analyses.append(_describe(tp_group, graph, root, size, names, order, param_names, {id(inputs)},
                                  macs, total_macs, returned, covered))
    _block_partial_coverage(model, analyses)
    return analyses


def _describe(tp_group, graph, root, size, names, order, param_names, input_ids, macs, total_macs, returned,
              covered) -> GroupAnalysis:
    blocked: str | None = None
    producers: dict[str, bool] = {}  # name -> depthwise
    consumers: list[str] = []
    norms: list[str] = []
    by_tensor: dict[tuple[str, str, int], dict[int, int]] = defaultdict(dict)

    def block(reason: str) -> None:
        nonlocal blocked
        blocked = blocked or reason

    for item in tp_group.items:
        dep, positions = item.dep, list(item.idxs)
        channels = list(item.root_idxs)
        module = dep.target.module
        if isinstance(module, nn.Parameter):
            block(f"unsupported parameter {param_names.get(id(module), '?')!r}")
            continue
        if not isinstance(module, nn.Module) or module not in names:
            reason = _op_block_reason(dep.target, input_ids)
            if reason:
                block(reason)
            continue
        name = names[module]
        if any(c is None for c in channels):
            block(f"index mapping into {name!r} is not one-to-one")
            continue
        is_out = graph.is_out_channel_pruning_fn(dep.handler)
        grouped = isinstance(module, _ConvNd) and (module.transposed or (module.groups > 1
                                                                         and not is_depthwise(module)))
        if isinstance(module, _ConvNd):
            role = "out" if (is_out or is_depthwise(module)) else "in"
        elif isinstance(module, nn.Linear):
            role = "out" if is_out else "in"
        elif isinstance(module, _BatchNorm):
            role = "norm"
        else:
            block(f"unsupported layer {name!r} ({type(module).__name__})")
            continue
        if role != "in" and (not dep.target.outputs or module in returned):
            block("network output")  # nothing in the graph reads this module: its output leaves the network
        if role == "out":
            producers[name] = isinstance(module, _ConvNd) and is_depthwise(module)
            covered.add(module)
        elif role == "in" and name not in consumers:
            consumers.append(name)
        elif role == "norm" and name not in norms:
            norms.append(name)
        if grouped:
            block(f"grouped convolution {name!r} (groups={module.groups})")
            continue
        for piece in _tensor_slices(module, name, role, positions, channels):
            extent = getattr(module, piece.tensor).shape[piece.dim]
            mapping = by_tensor[(piece.module, piece.tensor, piece.dim)]
            for pos, ch in zip(piece.positions, piece.channels, strict=True):
                if not 0 <= pos < extent or not 0 <= ch < size or mapping.get(pos, ch) != ch:
                    block(f"index mapping into {name!r} is out of range or ambiguous")
                    break
                mapping[pos] = ch

    slices = tuple(
        ChannelSlice(m, t, d, tuple(sorted(mapping)), tuple(mapping[p] for p in sorted(mapping)))
        for (m, t, d), mapping in sorted(by_tensor.items(), key=lambda kv: (order[kv[0][0]], kv[0][1], kv[0][2]))
    )
    producer_names = sorted(producers, key=order.__getitem__)
    consumer_names = sorted(consumers, key=order.__getitem__)
    root_name = names[root]
    bn = None
    for out_node in graph.module2node[root].outputs:
        if isinstance(out_node.module, _BatchNorm):
            bn = names[out_node.module]
            break
    touched = {names[m] for m in macs} & (set(producer_names) | set(consumer_names))
    share = sum(macs[m] for m in macs if names[m] in touched) / total_macs
    group = ChannelGroup(
        name=root_name,
        size=size,
        producers=tuple(producer_names),
        consumers=tuple(consumer_names),
        norms=tuple(sorted(norms, key=order.__getitem__)),
        bn=bn,
        internal=sum(1 for depthwise in producers.values() if not depthwise) == 1,
        macs_share=share,
        slices=slices,
    )
    return GroupAnalysis(group, blocked)


def _block_partial_coverage(model: nn.Module, analyses: list[GroupAnalysis]) -> None:
    """Block groups that cover a tensor dim only in part, or overlap another group on it.

    Every sliced dim must be partitioned exactly by the groups that reach it; otherwise some channels arrive by a
    route the engine did not map (e.g. a flatten it could not resolve) and pruning would mis-align columns.
    """
    claims: dict[tuple[str, str, int], list[tuple[GroupAnalysis, tuple[int, ...]]]] = defaultdict(list)
    for analysis in analyses:
        for piece in analysis.group.slices:
            claims[(piece.module, piece.tensor, piece.dim)].append((analysis, piece.positions))
    for (module_name, tensor_name, dim), entries in claims.items():
        extent = getattr(model.get_submodule(module_name), tensor_name).shape[dim]
        seen: list[int] = []
        for _, positions in entries:
            seen.extend(positions)
        if len(seen) != len(set(seen)) or len(set(seen)) != extent:
            for analysis, _ in entries:
                if analysis.blocked is None:
                    analysis.blocked = f"channels of {module_name!r} are only partly traced"
