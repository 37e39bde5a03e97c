"""Collect one channel group from Torch-Pruning's dependency graph, in bounded time.

The same propagation as `DependencyGraph.get_pruning_group` (follow every dependency the current pruning
operation triggers, mapping indices through each dependency's index mappings), with three differences:
visited (node, operation, indices) states are kept in a hash set (Torch-Pruning compares lists, quadratic per
step); the number of steps and the size of index lists are bounded, so a mapping that keeps producing new index
sets (a cycle through reshapes) stops with a one-line error naming the node; and `overrides` replaces the index
mapping of chosen (source, target) edges (the channel permutations of `shuffle.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch_pruning as tp
from torch_pruning._helpers import _HybridIndex

from prunekit.channels.tracing import Deadline
from prunekit.errors import UserError

IndexMap = Callable[[list[_HybridIndex]], list[_HybridIndex]]


@dataclass
class Item:
    """One coupled pruning operation: Torch-Pruning's dependency and the (index, root index) pairs it prunes."""

    dep: tp.dependency.Dependency
    idxs: list[_HybridIndex]


def node_label(node: tp.dependency.Node) -> str:
    if node.name:
        return repr(node.name)
    fn = node.grad_fn
    return fn.name() if hasattr(fn, "name") else type(fn).__name__


def collect(graph: tp.DependencyGraph, root: object, deadline: Deadline, overrides: dict[tuple, IndexMap],
            max_steps: int) -> list[Item]:
    """The merged items of the group rooted at the output channels of `root` (every channel of it)."""
    pruner = graph.get_pruner_of_module(root)
    size = pruner.get_out_channels(root)
    fn = pruner.prune_out_channels
    if isinstance(root, tp.ops.TORCH_CONV) and root.groups == root.out_channels and root.out_channels > 1:
        fn = tp.pruner.function.prune_depthwise_conv_out_channels
    node = graph.module2node[root]
    first = tp.dependency.Dependency(fn, fn, source=node, target=node)
    start = [_HybridIndex(idx=i, root_idx=i) for i in range(size)]
    seen: set[tuple] = set()
    merged: dict[tuple, Item] = {}
    stack = [(first, start)]
    steps = 0
    while stack:
        dep, idxs = stack.pop()
        key = (id(dep.target), dep.handler, frozenset(idxs))
        if key in seen:
            continue
        seen.add(key)
        _merge(merged, dep, idxs)
        steps += 1
        if steps > max_steps or len(idxs) > 64 * size + 4096:
            raise UserError(f"channel analysis stopped at {node_label(dep.target)} (group of "
                            f"{node_label(node)}): the graph engine's index mapping does not settle "
                            f"({steps} steps); this structure cannot be pruned safely")
        if steps % 256 == 0:
            deadline.check(f"collecting the channel group of {node_label(node)}")
        for new_dep in dep.target.dependencies:
            if not new_dep.is_triggered_by(dep.handler):
                continue
            override = overrides.get((new_dep.source, new_dep.target))
            if override is not None:
                new_idxs = override(idxs)
            else:
                new_idxs = idxs
                for mapping in new_dep.index_mapping:
                    if mapping is not None:
                        new_idxs = mapping(new_idxs)
            if new_idxs:
                stack.append((new_dep, list(new_idxs)))
    return list(merged.values())


def _merge(merged: dict[tuple, Item], dep: tp.dependency.Dependency, idxs: list[_HybridIndex]) -> None:
    """Torch-Pruning's add_and_merge: one item per (target, handler), the first root index per position kept."""
    key = (id(dep.target), dep.handler)
    item = merged.get(key)
    if item is None:
        merged[key] = Item(dep, _dedupe(idxs))
        return
    item.idxs = _dedupe(item.idxs + idxs)


def _dedupe(idxs: list[_HybridIndex]) -> list[_HybridIndex]:
    """Unique (idx, root_idx) pairs in first-seen order; a position reached from two root channels keeps both,
    so the caller can see that the mapping is not one-to-one."""
    return list(dict.fromkeys(idxs))
