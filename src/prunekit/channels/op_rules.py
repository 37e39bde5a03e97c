"""Which free-standing ops (autograd nodes outside modules) cannot carry a pruned channel group, judged by what
the op does (its autograd node's type and saved dims/sizes), never by a substring of a user's class name.

An op blocks a group when it mixes values across the channel dim (softmax / reductions / norms over dim 1, roll,
flip, indexing, pixel shuffle), when it is a custom autograd Function (the engine cannot see inside it), when it
is a reshape that regroups the channel dim other than a flatten Torch-Pruning maps, when it splits, slices or
concatenates channels with sizes the engine could not resolve, or when it pads channels. Everything else
(element-wise ops, pooling, broadcasting, moving dims) passes to the numerical check in `verify.py`, which
compares the pruned subnet with the masked supernet and blocks a group the engine mapped wrongly.
"""

from __future__ import annotations

import torch
import torch_pruning as tp

from prunekit.channels.tracing import Trace

_SOFTMAX = ("SoftmaxBackward", "LogSoftmaxBackward")
_REDUCTIONS = ("MeanBackward", "SumBackward", "AmaxBackward", "AminBackward", "MaxBackward", "MinBackward",
               "StdBackward", "VarBackward", "NormBackward", "LinalgVectorNormBackward", "ProdBackward",
               "CumsumBackward", "CumprodBackward", "LogsumexpBackward", "SortBackward", "TopkBackward",
               "MedianBackward", "StdMeanBackward", "VarMeanBackward")
_MIXING = ("PixelShuffleBackward", "PixelUnshuffleBackward", "ChannelShuffleBackward", "IndexBackward",
           "IndexSelectBackward", "GatherBackward", "TakeBackward", "RepeatBackward", "Im2ColBackward",
           "Col2ImBackward", "NativeLayerNormBackward", "NativeGroupNormBackward", "ConvolutionBackward",
           "MmBackward", "BmmBackward", "AddmmBackward", "MatmulBackward", "EinsumBackward", "LinearBackward",
           "CudnnBatchNormBackward", "NativeBatchNormBackward", "UnbindBackward", "WeightNormInterfaceBackward")
_DIMS_MOVING = ("RollBackward", "FlipBackward")


def _dims(grad_fn: object, rank: int | None) -> tuple[int, ...] | None:
    """The dims an op acts on, normalised to be non-negative; None when it acts on all of them."""
    for attr in ("_saved_dim", "_saved_dims"):
        value = getattr(grad_fn, attr, None)
        if value is None:
            continue
        values = tuple(value) if isinstance(value, (tuple, list)) else (int(value),)
        if not values:
            return None
        return tuple(int(d) % rank if rank and int(d) < 0 else int(d) for d in values)
    return None


def _rank(grad_fn: object, trace: Trace) -> int | None:
    sizes = getattr(grad_fn, "_saved_self_sym_sizes", None)
    if sizes is not None:
        return len(sizes)
    record = trace.ops.get(id(grad_fn))
    return len(record[1]) if record else None


def op_block_reason(node: tp.dependency.Node, trace: Trace) -> str | None:
    """Why a non-module node of the traced graph cannot carry a pruned group (None when it may)."""
    if node.type == tp.ops.OPTYPE.OUTPUT:
        return "network output"
    grad_fn = node.grad_fn
    for next_fn, _ in getattr(grad_fn, "next_functions", ()):
        if next_fn is not None and id(getattr(next_fn, "variable", None)) in trace.input_ids:
            return "joined with the network input"
    if id(grad_fn) in trace.interior:
        return None  # computed inside a channel-norm module, which is sliced as a whole
    if id(grad_fn) in trace.layout:
        return trace.layout[id(grad_fn)]  # part of a layout chain: a channel permutation (None) or not
    if isinstance(grad_fn, torch.autograd.function.BackwardCFunction) or not hasattr(grad_fn, "name"):
        return f"custom autograd function {type(grad_fn).__name__} (the graph engine cannot map it channel by channel)"
    name = grad_fn.name()
    rank = _rank(grad_fn, trace)
    if name.startswith("ConstantPadNd"):
        pad = tuple(getattr(grad_fn, "_saved_pad", ()))
        ndim = rank or 4
        channel_pair = pad[2 * (ndim - 2): 2 * (ndim - 2) + 2]
        if len(pad) > 2 * (ndim - 2) and any(int(p) != 0 for p in channel_pair):
            return "channel padding (option-A shortcut)"
        return None
    if name.startswith(_MIXING):
        return f"channel-mixing operation {name}"
    if name.startswith(_SOFTMAX + _REDUCTIONS + _DIMS_MOVING):
        dims = _dims(grad_fn, rank)
        if dims is None or (rank is not None and rank >= 2 and 1 in dims):
            return f"{name} acts across the channel dim"
        return None
    return _structural_reason(node, name, rank, trace)


def _structural_reason(node: tp.dependency.Node, name: str, rank: int | None, trace: Trace) -> str | None:
    """Reshapes, splits and concatenations the engine could not map."""
    kind = node.type
    if kind == tp.ops.OPTYPE.RESHAPE:
        before = tuple(getattr(node.grad_fn, "_saved_self_sym_sizes", ()) or ())
        record = trace.ops.get(id(node.grad_fn))
        after = record[1] if record else None
        if before and after and len(before) >= 2 and len(after) >= 2 and before[1] != after[1]:
            flatten = len(after) == 2 and after[1] == _prod(before[1:])
            unflatten = len(before) == 2 and before[1] == _prod(after[1:])
            if not (flatten or unflatten):
                return f"{name} regroups the channel dim ({list(before)} -> {list(after)})"
        return None
    if kind in (tp.ops.OPTYPE.SPLIT, tp.ops.OPTYPE.CONCAT):
        dims = _dims(node.grad_fn, rank)
        if dims and dims[0] == 1 and node.module.offsets is None:
            return f"{name} along channels with sizes the graph engine could not resolve"
        return None
    if kind == tp.ops.OPTYPE.UNBIND:
        return f"{name} takes a tensor apart"
    return None


def _prod(values: tuple[int, ...]) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out
