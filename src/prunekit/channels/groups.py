"""Channel groups: the tensor slices that share one channel index space, discovered by tracing the model.

Torch-Pruning's DependencyGraph is the graph engine: it traces the model through autograd and, for a producer's
output channels, lists every coupled (module, pruning function, indices) item, with index mappings through
concatenation (offsets), split / chunk / slicing, flatten (one channel -> H*W columns of a Linear) and residual
adds. `tracing.py` builds it under guard, `traversal.py` collects each group in bounded time, `shuffle.py` maps
channel permutations the engine cannot, and this module turns each group into plain data (`ChannelSlice`) and
decides whether it may shrink. Everything that edits tensors lives in `surgery.py`.

Channels that must go together are merged into one group channel: the channels of a grouped convolution at the
same index within each conv group (so every conv group keeps the same width; depthwise convs keep one channel per
group and shrink with it), and channels the engine maps onto one position (a GLU's two halves).

A group is *blocked* (never returned by `channel_groups`, shown with its reason by `inspect_rows`) when it touches
the network output (classifier rows) or input, channel padding, an op that mixes channels (`op_rules.py`), a
layer prunekit cannot slice, tensor dims it covers only in part, or when the numerical check fails: a subnet
pruning about half of its channels does not compute what the masked supernet computes (`verify.py`).
"""

from __future__ import annotations

import math
import weakref
from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from prunekit.channels.groups_base import (
    POLICIES,
    ChannelGroup,
    ChannelSlice,
    GroupAnalysis,
    is_depthwise,
    is_grouped,
    is_plain_weight_layer,
)
from prunekit.channels.op_rules import op_block_reason
from prunekit.channels.shuffle import find_layout_chains, permutation_overrides, repair_concats, repair_splits
from prunekit.channels.tracing import ANALYSIS_TIME_LIMIT_S, Deadline, Trace, engine_error, trace_model
from prunekit.channels.traversal import collect
from prunekit.errors import UserError
from prunekit.measure import eval_mode

__all__ = ["POLICIES", "ChannelGroup", "ChannelSlice", "GroupAnalysis", "analyse_groups", "channel_groups",
           "is_depthwise", "is_grouped", "is_plain_weight_layer", "require_prunable", "unsupported_layers"]

MAX_STEPS_PER_GROUP = 200_000

# role -> (tensor, dim) sliced; "norm" lists every per-channel tensor a norm may own
_ROLE_TENSORS = {
    "out": (("weight", 0), ("bias", 0)),
    "in": (("weight", 1),),
    "norm": (("weight", 0), ("bias", 0), ("running_mean", 0), ("running_var", 0)),
}


@dataclass
class Analysis:
    groups: list[GroupAnalysis]
    untraced: list[str]


def _known_layer(module: nn.Module) -> bool:
    if isinstance(module, _ConvNd):
        return not module.transposed
    if isinstance(module, nn.LayerNorm):
        return len(module.normalized_shape) == 1 and module.weight is not None
    if isinstance(module, nn.PReLU):
        return True
    return isinstance(module, (nn.Linear, _BatchNorm))


def unsupported_layers(model: nn.Module) -> list[tuple[str, str]]:
    """(name, type) of every module owning tensors prunekit cannot slice: built-in layers other than Conv (not
    transposed), Linear, BatchNorm, LayerNorm over one dim with affine weights and PReLU, and custom modules that
    own buffers. A custom module owning only parameters (a layer scale) is supported: the graph engine maps its
    parameters with the channels they scale, and the numerical check confirms it."""
    found = []
    for name, module in model.named_modules():
        has_params = any(True for _ in module.parameters(recurse=False))
        has_buffers = any(True for _ in module.buffers(recurse=False))
        if not (has_params or has_buffers) or _known_layer(module):
            continue
        if has_buffers or type(module).__module__.startswith("torch.nn"):
            found.append((name, type(module).__name__))
    return found


def raise_if_unsupported(model: nn.Module) -> None:
    found = unsupported_layers(model)
    if found:
        listed = ", ".join(f"{name!r} ({kind})" for name, kind in found[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise UserError(f"unsupported layer(s) for channel pruning: {listed}{more}; prunekit slices only "
                        "Conv1d/2d/3d, Linear, BatchNorm, LayerNorm, PReLU and per-channel parameters")


def channel_groups(model: nn.Module, example_inputs: torch.Tensor, policy: str = "all",
                   time_limit: float = ANALYSIS_TIME_LIMIT_S) -> list[ChannelGroup]:
    """The prunable channel groups of `model` under `policy` ("internal" or "all"), in named_modules order.

    Stops with a UserError past `time_limit` seconds, naming where the analysis was."""
    if policy not in POLICIES:
        raise UserError(f"unknown channel policy {policy!r}; choose one of {', '.join(POLICIES)}")
    raise_if_unsupported(model)
    groups = [a.group for a in analyse(model, example_inputs, time_limit).groups if a.blocked is None]
    if policy == "internal":
        groups = [g for g in groups if g.internal]
    return groups


def require_prunable(groups: list[ChannelGroup] | None, policy: str, who: str = "this method") -> None:
    """Raise a UserError naming the policy when no group may shrink under it (size 1 groups cannot shrink)."""
    if groups is None or not any(g.size > 1 for g in groups):
        other = "; `policy: all` also prunes residual streams" if policy == "internal" else ""
        raise UserError(f"{who}: no channel group of this model is prunable under channel policy {policy!r}"
                        f"{other}; `prunekit inspect --model ...` shows every group and why it is blocked")


def _flatten_outputs(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _flatten_outputs(item)]
    return []


def forward_profile(model: nn.Module, example_inputs: torch.Tensor) -> tuple[dict[nn.Module, float], set[nn.Module]]:
    """Per-sample MACs of every Conv and Linear, and the Conv/Linear/norm modules whose output tensor is returned
    by the model (one eval-mode forward)."""
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

    kinds = (_ConvNd, nn.Linear, _BatchNorm, nn.LayerNorm, nn.PReLU)
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


def analyse_groups(model: nn.Module, example_inputs: torch.Tensor,
                   time_limit: float = ANALYSIS_TIME_LIMIT_S) -> list[GroupAnalysis]:
    """Every traced group (root = each conv/linear not yet covered, in named_modules order), blocked or not."""
    return analyse(model, example_inputs, time_limit).groups


def analyse(model: nn.Module, example_inputs: torch.Tensor, time_limit: float = ANALYSIS_TIME_LIMIT_S) -> Analysis:
    """`analyse_groups` plus the modules that ran outside the traced graph."""
    deadline = Deadline(time_limit)
    example_inputs = example_inputs[:1]  # one sample is enough to trace the structure and count per-sample MACs
    trace = trace_model(model, example_inputs, deadline)
    repair_concats(trace)
    repair_splits(trace)
    chains = find_layout_chains(trace)
    for chain in chains:
        reason = None if chain.perm is not None else f"channel-mixing reshape {chain.label}"
        trace.layout.update({id(n.grad_fn): reason for n in chain.nodes})
    overrides = permutation_overrides(chains)
    context = _Context(model, trace, example_inputs)
    analyses: list[GroupAnalysis] = []
    with deadline.guard():
        for root in context.names:
            if root in context.covered or root not in trace.graph.module2node or not isinstance(
                    root, (_ConvNd, nn.Linear)):
                continue
            deadline.check(f"collecting the channel group of {context.names[root]!r}")
            try:
                items = collect(trace.graph, root, deadline, overrides, MAX_STEPS_PER_GROUP)
            except (UserError, AssertionError) as error:
                raise error if isinstance(error, UserError) else engine_error("collecting groups", error) from error
            except Exception as error:
                if type(error).__name__ == "AnalysisTimeout":
                    raise
                raise engine_error(f"collecting the group of {context.names[root]!r}", error) from error
            analyses.append(_describe(items, root, context))
        _block_partial_coverage(model, analyses)
        deadline.check("checking each group numerically against the masked supernet")
        from prunekit.channels.verify_groups import verify_groups  # late: verify imports surgery

        verify_groups(model, analyses, example_inputs, trace.untraced, deadline)
    return Analysis(analyses, trace.untraced)


class _Context:
    """What `_describe` needs about the model: names, order, parameter names, MACs, returned modules."""

    def __init__(self, model: nn.Module, trace: Trace, example_inputs: torch.Tensor) -> None:
        self.graph = trace.graph
        self.trace = trace
        self.names = {module: name for name, module in model.named_modules()}
        self.order = {name: i for i, name in enumerate(self.names.values())}
        self.param_names = {id(p): n for n, p in model.named_parameters()}
        self.macs, self.returned = forward_profile(model, example_inputs)
        self.total_macs = sum(self.macs.values()) or 1.0
        self.covered: set[nn.Module] = set()


def _role(module: nn.Module, is_out: bool) -> str | None:
    if isinstance(module, _ConvNd):
        return "out" if (is_out or is_depthwise(module)) else "in"
    if isinstance(module, nn.Linear):
        return "out" if is_out else "in"
    if isinstance(module, (_BatchNorm, nn.LayerNorm, nn.PReLU)) and _known_layer(module):
        return "norm"
    return None


class _Channels:
    """Union-find over the root's channels: channels that share a position, or a grouped conv's local index,
    must be removed together; `classes()` numbers the merged channels 0..n-1 by their smallest member."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, c: int) -> int:
        while self.parent[c] != c:
            self.parent[c] = self.parent[self.parent[c]]
            c = self.parent[c]
        return c

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def classes(self) -> list[int]:
        ids: dict[int, int] = {}
        return [ids.setdefault(self.find(c), len(ids)) for c in range(len(self.parent))]


def _describe(items, root: nn.Module, ctx: _Context) -> GroupAnalysis:
    names, graph = ctx.names, ctx.graph
    size = graph.get_pruner_of_module(root).get_out_channels(root)
    reasons: list[str] = []
    producers: dict[str, bool] = {}  # name -> depthwise
    consumers: list[str] = []
    norms: list[str] = []
    entries: dict[tuple[str, str, int], dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
    merged = _Channels(size)

    for item in items:
        dep, module = item.dep, item.dep.target.module
        pairs = [(i.idx, i.root_idx) for i in item.idxs]
        if any(c is None or not 0 <= c < size for _, c in pairs):
            reasons.append(f"index mapping into {dep.target.name or 'an op'} is not one-to-one")
            continue
        if isinstance(module, nn.Parameter):
            name = ctx.param_names.get(id(module), "?")
            owner, _, tensor = name.rpartition(".")
            dim = dep.target.pruning_dim if dep.target.pruning_dim is not None else 0
            for pos, ch in pairs:
                entries[(owner, tensor, dim)][pos].add(ch)
            continue
        if not isinstance(module, nn.Module) or module not in names:
            reason = op_block_reason(dep.target, ctx.trace)
            if reason:
                reasons.append(reason)
            continue
        name = names[module]
        role = _role(module, graph.is_out_channel_pruning_fn(dep.handler))
        if role is None:
            reasons.append(f"unsupported layer {name!r} ({type(module).__name__})")
            continue
        if role != "in" and (not dep.target.outputs or module in ctx.returned):
            reasons.append("network output")  # nothing in the graph reads this module: its output leaves the network
        _record_role(module, name, role, producers, consumers, norms, ctx)
        local = _grouped_local(module, role, pairs, merged)
        for tensor, dim in _ROLE_TENSORS[role]:
            if getattr(module, tensor, None) is None or (role == "norm" and getattr(module, tensor).numel() == 1):
                continue
            for pos, ch in local:
                entries[(name, tensor, dim)][pos].add(ch)

    slices, reason = _slices(entries, merged, ctx)
    if reason:
        reasons.append(reason)
    classes = merged.classes()
    group = _group(root, 1 + max(classes) if classes else 0, producers, consumers, norms, slices, ctx)
    return GroupAnalysis(group, reasons[0] if reasons else None)


def _record_role(module, name, role, producers, consumers, norms, ctx) -> None:
    if role == "out":
        producers[name] = isinstance(module, _ConvNd) and is_depthwise(module)
        ctx.covered.add(module)
    elif role == "in" and name not in consumers:
        consumers.append(name)
    elif role == "norm" and name not in norms:
        norms.append(name)


def _grouped_local(module: nn.Module, role: str, pairs: list[tuple[int, int]],
                   merged: _Channels) -> list[tuple[int, int]]:
    """A grouped conv's (position, channel) pairs on its weight, merging channels at the same index within
    every conv group: its input side maps channel position p to weight column p % (in / groups)."""
    if not is_grouped(module):
        return pairs
    width = (module.in_channels if role == "in" else module.out_channels) // module.groups
    by_local: dict[int, int] = {}
    for pos, ch in pairs:
        first = by_local.setdefault(pos % width, ch)
        merged.union(first, ch)
    if role == "in":
        return [(pos % width, ch) for pos, ch in pairs]
    return pairs


def _slices(entries, merged: _Channels, ctx: _Context) -> tuple[tuple[ChannelSlice, ...], str | None]:
    """Merge the channels that share a position, then one ChannelSlice per (module, tensor, dim)."""
    for mapping in entries.values():
        for channels in mapping.values():
            first, *rest = channels
            for other in rest:
                merged.union(first, other)
    classes = merged.classes()
    reason = None
    result = []
    for (module_name, tensor, dim), mapping in sorted(entries.items(), key=lambda kv: (
            ctx.order.get(kv[0][0], 0), kv[0][1], kv[0][2])):
        positions = sorted(mapping)
        tensor_value = getattr(ctx.graph.model.get_submodule(module_name), tensor, None)
        extent = tensor_value.shape[dim] if isinstance(tensor_value, torch.Tensor) and tensor_value.dim() > dim \
            else -1
        if positions and not 0 <= positions[0] <= positions[-1] < extent:
            reason = reason or f"index mapping into {module_name!r} is out of range"
            continue
        result.append(ChannelSlice(module_name, tensor, dim, tuple(positions),
                                   tuple(classes[next(iter(mapping[p]))] for p in positions)))
    return tuple(result), reason


def _group(root, size, producers, consumers, norms, slices, ctx: _Context) -> ChannelGroup:
    names, order = ctx.names, ctx.order
    producer_names = sorted(producers, key=order.__getitem__)
    consumer_names = sorted(consumers, key=order.__getitem__)
    bn = None
    for out_node in ctx.graph.module2node[root].outputs:
        if isinstance(out_node.module, _BatchNorm):
            bn = names[out_node.module]
            break
    touched = set(producer_names) | set(consumer_names)
    share = sum(m for module, m in ctx.macs.items() if names[module] in touched) / ctx.total_macs
    return ChannelGroup(
        name=names[root], size=size, producers=tuple(producer_names), consumers=tuple(consumer_names),
        norms=tuple(sorted(norms, key=order.__getitem__)), bn=bn,
        internal=sum(1 for depthwise in producers.values() if not depthwise) == 1,
        macs_share=share, slices=slices)


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
