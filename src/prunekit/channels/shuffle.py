"""Channel shuffles and other layout-only op chains: find them, replay them on an index tensor, and map indices.

A *layout chain* is a run of autograd nodes that only move values (view / reshape / transpose / permute /
clone), each with one input and one output, whose output has the shape of its input. Replaying the chain on a
tensor that holds each element's channel index tells exactly where every channel goes: when all elements of
output channel j come from one input channel perm[j] and perm is a permutation, the chain is a channel
permutation (ShuffleNet's view-transpose-view or reshape-permute-reshape), and the group propagation maps
indices through it; otherwise the chain mixes channels with spatial positions and blocks the groups it touches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch_pruning._helpers import _HybridIndex
from torch_pruning.dependency.index_mapping import (
    _ConcatIndexMapping,
    _FlattenIndexMapping,
    _SplitIndexMapping,
)

from prunekit.channels.tracing import Trace
from prunekit.channels.traversal import IndexMap

_LAYOUT = ("ViewBackward", "UnsafeViewBackward", "ReshapeAliasBackward", "TransposeBackward", "PermuteBackward",
           "CloneBackward", "AliasBackward", "ExpandBackward")


@dataclass
class LayoutChain:
    nodes: list[tp.dependency.Node]
    perm: list[int] | None  # output channel j reads input channel perm[j]; None: not a channel permutation

    @property
    def label(self) -> str:
        return " -> ".join(n.grad_fn.name() for n in self.nodes)


def _is_layout(node: tp.dependency.Node) -> bool:
    fn = node.grad_fn
    return (node.module is not None and not isinstance(node.module, torch.nn.Parameter) and hasattr(fn, "name")
            and fn.name().startswith(_LAYOUT) and node.type in (tp.ops.OPTYPE.RESHAPE, tp.ops.OPTYPE.ELEMENTWISE)
            and len(node.inputs) == 1)


def _replay(chain: list[tp.dependency.Node], start: torch.Tensor, trace: Trace) -> torch.Tensor | None:
    x = start
    for node in chain:
        fn = node.grad_fn
        name = fn.name()
        record = trace.ops.get(id(fn))
        if name.startswith(("ViewBackward", "UnsafeViewBackward", "ReshapeAliasBackward")):
            if record is None:
                return None
            x = x.reshape(record[1])
        elif name.startswith("TransposeBackward"):
            x = x.transpose(int(fn._saved_dim0), int(fn._saved_dim1))
        elif name.startswith("PermuteBackward"):
            x = x.permute(*[int(d) for d in fn._saved_dims])
        elif name.startswith("ExpandBackward"):
            return None
    return x


def find_layout_chains(trace: Trace) -> list[LayoutChain]:
    """Every maximal layout chain whose output shape equals its input shape and that moves something."""
    nodes = [n for n in trace.graph.module2node.values() if _is_layout(n)]
    starts = [n for n in nodes if not _is_layout(n.inputs[0])]
    chains = []
    for first in starts:
        chain = [first]
        while len(chain[-1].outputs) == 1 and _is_layout(chain[-1].outputs[0]):
            chain.append(chain[-1].outputs[0])
        in_record = trace.ops.get(id(first.inputs[0].grad_fn))
        out_record = trace.ops.get(id(chain[-1].grad_fn))
        if in_record is None or out_record is None or in_record[1] != out_record[1] or len(in_record[1]) < 2:
            continue
        shape = in_record[1]
        if not any(n.grad_fn.name().startswith(("TransposeBackward", "PermuteBackward")) for n in chain):
            continue  # views and clones that give back the same shape move nothing
        channel = torch.arange(shape[1]).view(1, -1, *([1] * (len(shape) - 2))).expand(*shape).contiguous()
        moved = _replay(chain, channel, trace)
        perm = None
        if moved is not None and tuple(moved.shape) == tuple(shape):
            flat = moved.movedim(1, 0).reshape(shape[1], -1)
            if bool((flat == flat[:, :1]).all()):
                candidate = flat[:, 0].tolist()
                if sorted(candidate) == list(range(shape[1])):
                    perm = candidate
        chains.append(LayoutChain(chain, perm))
    return chains


def permutation_overrides(chains: list[LayoutChain]) -> dict[tuple, IndexMap]:
    """Index maps for the edges of each permutation chain: identity inside it, the permutation on the edge into
    its last node (index space of a node = its output's channels)."""
    overrides: dict[tuple, IndexMap] = {}
    for chain in chains:
        if chain.perm is None:
            continue
        inverse = [0] * len(chain.perm)
        for j, i in enumerate(chain.perm):
            inverse[i] = j
        _drop_flatten_mappings(chain.nodes)
        path = [chain.nodes[0].inputs[0], *chain.nodes]
        for a, b in zip(path[:-2], path[1:-1], strict=True):
            overrides[(a, b)] = overrides[(b, a)] = _identity
        last, before_last = path[-1], path[-2]
        overrides[(before_last, last)] = _mapper(inverse)
        overrides[(last, before_last)] = _mapper(chain.perm)
    return overrides


def _drop_flatten_mappings(nodes: list[tp.dependency.Node]) -> None:
    """Torch-Pruning may have given the reshapes of a permutation chain flatten mappings (it reads a view into
    5-D as a flatten); they would apply on top of the permutation."""
    chain = set(nodes)
    for node in nodes:
        deps = list(node.dependencies) + [d for other in node.outputs + node.inputs for d in other.dependencies]
        for dep in deps:
            if (dep.source in chain or dep.target in chain) and isinstance(dep.index_mapping[0],
                                                                           _FlattenIndexMapping):
                dep.index_mapping[0] = None


def _identity(idxs: list[_HybridIndex]) -> list[_HybridIndex]:
    return list(idxs)


def _mapper(table: list[int]) -> IndexMap:
    def apply(idxs: list[_HybridIndex]) -> list[_HybridIndex]:
        return [_HybridIndex(idx=table[i.idx], root_idx=i.root_idx) for i in idxs if 0 <= i.idx < len(table)]
    return apply


def repair_concats(trace: Trace) -> None:
    """Give channel concatenations whose sizes Torch-Pruning's shape inference could not resolve (it infers them
    through neighbouring layers, which fails next to a shuffle) the sizes recorded during the trace."""
    for node in trace.graph.module2node.values():
        if node.type != tp.ops.OPTYPE.CONCAT or node.module.offsets is not None:
            continue
        sizes = trace.cat_sizes.get(id(node.grad_fn))
        if getattr(node.grad_fn, "_saved_dim", None) != 1 or sizes is None or len(sizes) != len(node.inputs) \
                or len(set(node.inputs)) != len(node.inputs):
            continue
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        node.module.offsets = offsets
        for i, in_node in enumerate(node.inputs):
            for dep in node.dependencies:
                if dep.target is in_node:
                    dep.index_mapping[1] = _ConcatIndexMapping(offset=offsets[i:i + 2], reverse=True)
            for dep in in_node.dependencies:
                if dep.target is node:
                    dep.index_mapping[1] = _ConcatIndexMapping(offset=offsets[i:i + 2], reverse=False)


def _output_numbers(consumer_fn: object, split_fn: object, stop: set[int], limit: int = 256) -> set[int]:
    """Which outputs of `split_fn` the autograd node `consumer_fn` reads (searching back through the
    consumer's own interior nodes, never past another graph node in `stop`, at most `limit` of them)."""
    found: set[int] = set()
    stack, seen = [consumer_fn], set()
    while stack and len(seen) < limit:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        for nxt, nr in getattr(fn, "next_functions", ()):
            if nxt is split_fn:
                found.add(int(nr))
            elif nxt is not None and id(nxt) not in stop:
                stack.append(nxt)
    return found


def _split_offsets(fn: object) -> list[int] | None:
    """Piece offsets of a split / chunk along dim 1, from what its autograd node saved (Torch-Pruning reads other
    attribute names on this torch and falls back to inferring sizes from neighbouring layers)."""
    sizes = getattr(fn, "_saved_self_sym_sizes", None)
    if sizes is None or len(sizes) < 2 or int(getattr(fn, "_saved_dim", -1)) % len(sizes) != 1:
        return None
    total = int(sizes[1])
    pieces = getattr(fn, "_saved_split_sizes", None)
    if pieces is None:
        step = int(getattr(fn, "_saved_split_size", 0))
        if step <= 0:
            return None
        pieces = [min(step, total - start) for start in range(0, total, step)]
    offsets = [0]
    for piece in pieces:
        offsets.append(offsets[-1] + int(piece))
    return offsets if offsets[-1] == total else None


def repair_splits(trace: Trace) -> None:
    """Map each piece of a channel split / chunk to the consumer that reads it.

    Torch-Pruning assigns split pieces to consumers in the order it met the consumers while tracing, which need
    not be the order of the pieces (a ShuffleNet unit passes the first half on and convolves the second). The
    autograd graph says which output each consumer reads; a consumer reading several pieces blocks the split."""
    stop = {id(n.grad_fn) for n in trace.graph.module2node.values()}
    for node in trace.graph.module2node.values():
        if node.type != tp.ops.OPTYPE.SPLIT:
            continue
        offsets = _split_offsets(node.grad_fn)
        if offsets is None:
            continue
        node.module.offsets = offsets
        for out_node in dict.fromkeys(node.outputs):
            numbers = _output_numbers(out_node.grad_fn, node.grad_fn, stop)
            if len(numbers) != 1 or node.outputs.count(out_node) != 1:
                trace.layout[id(node.grad_fn)] = f"{node.grad_fn.name()} pieces read together by one op"
                continue
            (nr,) = numbers
            if nr + 1 >= len(offsets):
                trace.layout[id(node.grad_fn)] = f"{node.grad_fn.name()} with sizes the graph engine could not map"
                continue
            for dep in node.dependencies:
                if dep.target is out_node:
                    dep.index_mapping[0] = _SplitIndexMapping(offset=offsets[nr:nr + 2], reverse=False)
            for dep in out_node.dependencies:
                if dep.target is node:
                    dep.index_mapping[0] = _SplitIndexMapping(offset=offsets[nr:nr + 2], reverse=True)
