"""Per-group readers: the tensors, scores and plan summaries of one channel group, read from a supernet.

Methods and criteria see channels through these. Each maps per-layer tensors onto a `ChannelGroup` through its
tensor slices, so flattens (one channel -> several Linear columns) and concatenations (offset positions) are
handled exactly as materialize/absorb handle them. Everything reads a supernet (full width; most recently used
values at channels a plan removed) and returns float64 CPU tensors in group channel order.

    gammas = group_gammas(supernet, group, plan)             # |gamma| per channel, 0 where the plan removed it
    filters = group_filters(supernet, group, plan, groups)   # (size, inputs, kernel): row c is channel c
    model = masked_copy(supernet, plan, groups)              # removed channels zeroed, for per-layer criteria
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from prunekit.channels.groups import ChannelGroup, is_plain_weight_layer
from prunekit.channels.groups_base import ChannelSlice
from prunekit.channels.plan import ChannelPlan
from prunekit.channels.surgery import KeptIndices, kept_indices
from prunekit.criteria.magnitude import l1_filter_norms

__all__ = [
    "dependency_order",
    "filter_inputs",
    "group_filters",
    "group_gammas",
    "group_square_norms",
    "kept_fraction",
    "l1_group_scores",
    "masked_copy",
    "removed_counts",
    "sparse_sides",
]


def group_gammas(supernet: nn.Module, group: ChannelGroup, plan: ChannelPlan | None) -> torch.Tensor | None:
    """|gamma| per channel of `group` (float64, CPU), 0 at the channels `plan` removed (as under masked training).

    A single-producer group reads the BN after its producer. A residual stream (policy "all") has one BN per
    writer; a channel scores the largest |gamma| among them (it is unimportant only when every writer scales it
    down). None when the group has no affine BatchNorm of its width.
    """
    scores: torch.Tensor | None = None
    for name in group.norm_layers:
        bn = supernet.get_submodule(name)
        if not isinstance(bn, _BatchNorm) or bn.weight is None:
            continue
        for piece in group.slices:
            if piece.module != name or piece.tensor != "weight":
                continue
            gamma = torch.zeros(group.size, dtype=torch.float64)
            values = bn.weight.detach().abs().to("cpu", torch.float64)
            gamma[list(piece.channels)] = values[list(piece.positions)]
            scores = gamma if scores is None else torch.maximum(scores, gamma)
    if scores is None:
        return None
    kept = (plan or ChannelPlan()).kept(group)
    if len(kept) < group.size:
        removed = torch.ones(group.size, dtype=torch.bool)
        removed[kept] = False
        scores[removed] = 0.0
    return scores


def weight_slices(model: nn.Module, group: ChannelGroup,
                  dims: tuple[int, ...] = (0,)) -> Iterator[tuple[ChannelSlice, nn.Module]]:
    """(slice, module) for each slice of `group` on the weight of a plain conv/linear layer along one of `dims`
    (0: the rows that write the group, 1: the columns that read it). Depthwise convs are left out."""
    for piece in group.slices:
        if piece.tensor != "weight" or piece.dim not in dims:
            continue
        module = model.get_submodule(piece.module)
        if is_plain_weight_layer(module):
            yield piece, module


def group_filters(supernet: nn.Module, group: ChannelGroup, plan: ChannelPlan | None,
                  groups: Sequence[ChannelGroup], inputs: KeptIndices | None = None) -> torch.Tensor | None:
    """The filters that write `group`, as a (size, inputs, kernel) float64 CPU tensor: row c is channel c.

    Input channels that `plan` removed are sliced away first (REPrune's hard-pruning bookkeeping: the supernet
    still holds their most recently used values, which the subnet does not compute with). Removed output
    channels keep their most recently used rows (CHEX regrowth scores them). A group with several writers
    (a residual stream) stacks their kernels along the input axis, zero-padding smaller kernels to the largest
    kernel size; padding adds the same zero coordinates to every kernel of an input channel, so distances within
    an input channel (all that Ward clustering and the projections use) are unchanged. Depthwise convs that carry
    the group through are left out. None when no conv/linear writes the group. `inputs`: the plan's
    `kept_indices(supernet, groups, plan)`, when the caller has them already.
    """
    if inputs is None:
        inputs = kept_indices(supernet, list(groups), plan) if plan is not None else {}
    parts: list[torch.Tensor] = []
    for piece, module in weight_slices(supernet, group):
        weight = module.weight.detach().to("cpu", torch.float64)
        in_keep = inputs.get((piece.module, "weight"), {}).get(1)
        if in_keep is not None:
            weight = weight.index_select(1, in_keep.cpu())
        weight = weight.reshape(weight.shape[0], weight.shape[1], -1)
        rows = torch.zeros(group.size, weight.shape[1], weight.shape[2], dtype=torch.float64)
        rows[list(piece.channels)] = weight[list(piece.positions)]
        parts.append(rows)
    if not parts:
        return None
    width = max(p.shape[2] for p in parts)
    parts = [torch.nn.functional.pad(p, (0, width - p.shape[2])) for p in parts]
    return torch.cat(parts, dim=1)


def filter_inputs(groups: Sequence[ChannelGroup], model: nn.Module) -> dict[str, set[str]]:
    """Per group name: the names of the groups (among `groups`) whose channels its filters read.

    Group h feeds group g when a conv/linear that writes g (a weight slice on dim 0) reads h along its input
    dim (a weight slice of h on dim 1): pruning h then removes columns from the filters `group_filters` returns
    for g. Depthwise convs that carry a group through are not writers here, as in `group_filters`.
    """
    writers: dict[str, set[str]] = {g.name: set() for g in groups}
    readers: dict[str, set[str]] = {}  # module -> groups it reads on dim 1
    for group in groups:
        for piece, _ in weight_slices(model, group, dims=(0, 1)):
            if piece.dim == 0:
                writers[group.name].add(piece.module)
            else:
                readers.setdefault(piece.module, set()).add(group.name)
    return {name: set().union(*(readers.get(m, set()) for m in modules)) - {name}
            for name, modules in writers.items()}


def dependency_order(groups: Sequence[ChannelGroup], model: nn.Module) -> list[int]:
    """Indices into `groups`, each group after every group that feeds its filters (`filter_inputs`).

    Kahn's algorithm, taking the lowest ready index first (so a plain chain keeps its order). A cycle (a
    residual stream under policy "all" both feeds a block's conv1 and is written by its conv2, which reads
    conv1's group) has no such order; it is broken at the lowest remaining index, which then comes before
    some of its inputs.
    """
    feeds = filter_inputs(groups, model)
    index = {g.name: i for i, g in enumerate(groups)}
    waiting = {i: {index[n] for n in feeds[g.name]} for i, g in enumerate(groups)}
    order: list[int] = []
    while waiting:
        ready = [i for i, deps in waiting.items() if not deps]
        pick = min(ready) if ready else min(waiting)
        order.append(pick)
        del waiting[pick]
        for deps in waiting.values():
            deps.discard(pick)
    return order


def masked_copy(supernet: nn.Module, plan: ChannelPlan | None, groups: Sequence[ChannelGroup]) -> nn.Module:
    """The supernet with every channel the plan removed set to zero in every tensor slice, for reading only.

    The supernet keeps the most recently used values of removed channels (MRU bank); zeroing them makes
    per-layer criteria (row maxima, norms) look only at what the current subnet actually computes with. A deep
    copy when the plan removes something; the supernet itself (no copy) when `plan` is None or removes nothing.
    """
    if plan is None or all(len(plan.kept(g)) == g.size for g in groups):
        return supernet
    model = copy.deepcopy(supernet)
    with torch.no_grad():
        for group in groups:
            kept = set(plan.kept(group))
            if len(kept) == group.size:
                continue
            for piece in group.slices:
                positions = [p for p, c in zip(piece.positions, piece.channels, strict=True) if c not in kept]
                if not positions:
                    continue
                tensor = getattr(model.get_submodule(piece.module), piece.tensor)
                index = torch.tensor(positions, dtype=torch.long, device=tensor.device)
                tensor.index_fill_(piece.dim, index, 0.0)
    return model


def group_square_norms(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """Per channel of `group`: sum of squared weights over every conv/linear slice that writes or reads it."""
    total = torch.zeros(group.size, dtype=torch.float64)
    for piece, module in weight_slices(model, group, dims=(0, 1)):
        weight = module.weight.detach().to("cpu", torch.float64)
        other = [d for d in range(weight.dim()) if d != piece.dim]
        per_position = weight.pow(2).sum(dim=other)
        channels = torch.tensor(piece.channels, dtype=torch.long)
        total.index_add_(0, channels, per_position[list(piece.positions)])
    return total


def l1_group_scores(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """Per channel: the sum over the group's conv/linear producers of the filter L1 norm (Li et al. 2017).

    A single-producer group gets exactly `l1_filter_norms` of its producer."""
    total = torch.zeros(group.size, dtype=torch.float64)
    for piece, module in weight_slices(model, group):
        norms = l1_filter_norms(module.weight).to("cpu", torch.float64)
        channels = torch.tensor(piece.channels, dtype=torch.long)
        total.index_add_(0, channels, norms[list(piece.positions)])
    return total


def _per_channel_all(flags: torch.Tensor, piece_positions: Sequence[int], piece_channels: Sequence[int],
                     size: int) -> torch.Tensor:
    """Channel c is True iff every position of this slice that carries c is True (True when none does)."""
    dense = (~flags.detach().cpu()[list(piece_positions)]).long()
    dense_count = torch.zeros(size, dtype=torch.long).index_add_(0, torch.tensor(piece_channels), dense)
    return dense_count == 0


def sparse_sides(model: nn.Module, group: ChannelGroup,
                 masks: Mapping[str, Mapping[str, torch.Tensor]]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(one sparsity vector per writer, one per reader) of `group`, in group channels.

    Writers are the group's conv/linear producers (output rows, weight dim 0), readers its consumers (input
    columns, weight dim 1); `masks` is `sparse_channel_masks(model)`. Depthwise convs that carry the group are
    left out: PruneTrain does not regularise them, and they only pass each channel through to the readers.
    """
    writers: list[torch.Tensor] = []
    readers: list[torch.Tensor] = []
    for piece, _ in weight_slices(model, group, dims=(0, 1)):
        side = "output" if piece.dim == 0 else "input"
        vector = _per_channel_all(masks[piece.module][side], piece.positions, piece.channels, group.size)
        (writers if side == "output" else readers).append(vector)
    return writers, readers


def removed_counts(old: ChannelPlan | None, new: ChannelPlan, groups: Sequence[ChannelGroup]) -> dict[str, int]:
    """Channels each group loses from `old` to `new` (only groups that lose some)."""
    counts = {}
    old = old or ChannelPlan()
    for group in groups:
        lost = len(old.kept(group)) - len(new.kept(group))
        if lost:
            counts[group.name] = lost
    return counts


def kept_fraction(plan: ChannelPlan, groups: Sequence[ChannelGroup]) -> float:
    """The kept share of all channels of `groups` under `plan` (1.0 without groups)."""
    total = sum(g.size for g in groups)
    return sum(len(plan.kept(g)) for g in groups) / total if total else 1.0
