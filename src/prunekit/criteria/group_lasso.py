"""PruneTrain (Lym et al., SC'19): the group-lasso regularizer, its penalty-ratio weight, sparse channels.

Groups (PruneTrain `get_group_lasso_global`; research note classic_methods.md §1.2, Step 1):

- every Conv2d: one group per output channel, W[o, :, :, :], and one per input channel, W[:, i, :, :];
- every Linear: one group per input column W[:, i], and one per output row W[o, :] except for the classifier;
- not grouped: the first layer's input channels (they are the network input), the classifier's output rows
  (the classes), and depthwise convs (neither side; `channels.groups.is_depthwise`: groups == in == out > 1);
- only weights are in the groups. Biases and BatchNorm parameters are not, exactly as in PruneTrain's code,
  whose groups are slices of `W` only; the usual SGD weight decay is what acts on them.

Each group contributes sqrt(sum w^2 + eps) with eps = 1e-8 as in PruneTrain's code: the guard keeps the
gradient finite (and exactly zero) on all-zero groups. The penalty therefore carries a constant
n_groups * sqrt(eps) offset, which does not change its gradient.

Grouped convs (groups > 1, not depthwise): input channel i of a conv with G groups is read only by the output
channels of its own group, so its group is W[g*out/G:(g+1)*out/G, i mod (in/G)] with g = i // (in/G). That
includes a channel-multiplier conv (groups == in_channels, out = k * in, k > 1): it is grouped on both sides,
each output filter W[o] and each input channel's k filters W[i*k:(i+1)*k]. (Its channel groups are blocked from
pruning, `channels.groups`, so the penalty only shrinks those weights.)

The first layer and the classifier are found by module definition order (first and last Conv2d/Linear in
`model.named_modules()`); pass `first_layer=` / `classifier=` when that order differs from execution order.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from prunekit.channels.groups import is_depthwise

PRUNETRAIN_EPS = 1e-8  # inside the sqrt of each group norm, as in PruneTrain's code
PRUNETRAIN_THRESHOLD = 1e-4  # "--threshold": a weight below it counts as zero


@dataclass(frozen=True)
class GroupLassoLayer:
    """One layer the penalty touches and which of its sides are grouped."""

    name: str
    module: nn.Conv2d | nn.Linear
    input_groups: bool
    output_groups: bool


def _matching_names(model: nn.Module, names: Collection[str]) -> set[str]:
    known = {name for name, _ in model.named_modules()}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"group lasso: no module named {unknown[0]!r} in the model")
    return set(names)


def _is_excluded(name: str, exclude: set[str]) -> bool:
    return any(name == ex or name.startswith(ex + ".") or ex == "" for ex in exclude)


def group_lasso_layers(
    model: nn.Module,
    exclude: Collection[str] = (),
    first_layer: str | None = None,
    classifier: str | None = None,
) -> list[GroupLassoLayer]:
    """The Conv2d/Linear layers the penalty covers, in definition order, with the sides that are grouped.

    `exclude` names modules (and, through them, their submodules) left out entirely.
    """
    excluded = _matching_names(model, exclude)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not layers:
        return []
    _matching_names(model, [x for x in (first_layer, classifier) if x is not None])
    first = first_layer if first_layer is not None else layers[0][0]
    last = classifier if classifier is not None else layers[-1][0]
    chosen = []
    for name, module in layers:
        if _is_excluded(name, excluded):
            continue
        if isinstance(module, nn.Conv2d) and is_depthwise(module):
            continue
        chosen.append(GroupLassoLayer(name, module, input_groups=name != first, output_groups=name != last))
    return chosen


def output_group_squares(weight: torch.Tensor) -> torch.Tensor:
    """sum of w^2 over each output channel's group W[o, ...] -> (out,)."""
    return weight.pow(2).reshape(weight.shape[0], -1).sum(dim=1)


def input_group_squares(weight: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """sum of w^2 over each input channel's group -> (in,); Linear (out, in) or Conv2d (out, in/G, kh, kw)."""
    return _input_group_reduce(weight.pow(2), groups, "sum")


def _input_group_reduce(values: torch.Tensor, groups: int, how: str) -> torch.Tensor:
    out_channels, in_per_group = values.shape[0], values.shape[1]
    per_group = values.reshape(groups, out_channels // groups, in_per_group, -1)
    if how == "sum":
        return per_group.sum(dim=(1, 3)).reshape(groups * in_per_group)
    return per_group.amax(dim=(1, 3)).reshape(groups * in_per_group)


def safe_group_norm(squares: torch.Tensor, eps: float = PRUNETRAIN_EPS) -> torch.Tensor:
    """sqrt(squares + eps) elementwise; eps == 0 gives the plain norm, with gradient 0 (not NaN) at 0."""
    if eps > 0:
        return torch.sqrt(squares + eps)
    positive = squares > 0
    safe = torch.where(positive, squares, torch.ones_like(squares))
    return torch.where(positive, torch.sqrt(safe), torch.zeros_like(squares))


def _conv_groups(module: nn.Module) -> int:
    return module.groups if isinstance(module, nn.Conv2d) else 1


def group_lasso_penalty(
    model: nn.Module,
    exclude: Collection[str] = (),
    eps: float = PRUNETRAIN_EPS,
    first_layer: str | None = None,
    classifier: str | None = None,
) -> torch.Tensor:
    """PruneTrain's R_GL(W): sum of the L2 norms of all channel groups (module docstring). Differentiable.

    Finds the layers on every call; a training loop should find them once (`group_lasso_layers`) and call
    `group_lasso_penalty_from_layers` each step.
    """
    layers = group_lasso_layers(model, exclude, first_layer, classifier)
    if not layers:
        param = next(model.parameters(), None)
        return torch.zeros((), device=param.device if param is not None else None)
    return group_lasso_penalty_from_layers(layers, eps)


def group_lasso_penalty_from_layers(layers: Sequence[GroupLassoLayer], eps: float = PRUNETRAIN_EPS) -> torch.Tensor:
    """R_GL(W) over `layers` (from `group_lasso_layers`). Differentiable.

    One square per weight, one reduction per grouped side, then a single sqrt and sum over all groups at once.
    """
    squares: list[torch.Tensor] = []
    for layer in layers:
        weight_squared = layer.module.weight.pow(2)
        if layer.output_groups:
            squares.append(weight_squared.reshape(weight_squared.shape[0], -1).sum(dim=1))
        if layer.input_groups:
            squares.append(_input_group_reduce(weight_squared, _conv_groups(layer.module), "sum"))
    if not squares:
        return torch.zeros(())
    return safe_group_norm(torch.cat(squares), eps).sum()


def calibrate_group_lasso_weight(ce_loss: float, penalty: float, ratio: float = 0.2) -> float:
    """PruneTrain's lambda_g = r CE / ((1 - r) R): then lambda_g R / (CE + lambda_g R) = r on the first batch.

    Call it once on the first mini-batch with detached values, then keep lambda_g fixed (PruneTrain's code
    stores it and reuses it for the whole run).
    """
    ce_loss, penalty = float(ce_loss), float(penalty)
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"group lasso penalty ratio must lie in (0, 1), got {ratio}")
    if not (math.isfinite(ce_loss) and ce_loss > 0):
        raise ValueError(f"the first batch's loss must be finite and positive, got {ce_loss}")
    if not (math.isfinite(penalty) and penalty > 0):
        raise ValueError(f"the group-lasso penalty must be finite and positive, got {penalty}")
    return ratio * ce_loss / ((1.0 - ratio) * penalty)


def _prunable_layers(model: nn.Module) -> Iterator[tuple[str, nn.Conv2d | nn.Linear]]:
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            yield name, module


@torch.no_grad()
def sparse_channel_masks(
    model: nn.Module, threshold: float = PRUNETRAIN_THRESHOLD
) -> dict[str, dict[str, torch.Tensor]]:
    """Per Conv2d/Linear: {"output": (out,) bool, "input": (in,) bool}, True where the channel is sparse.

    A channel is sparse when every weight that touches it has |w| < threshold (PruneTrain Step 4; PruneTrain's
    code compares the signed weight, we use |w| as the research note recommends). Biases are not looked at:
    a channel is only removed when sparse on both sides (see `removable_channels`), and then nothing
    downstream reads the bias/BN constant it still emits. Depthwise and grouped convs use their true input
    groups.
    """
    masks: dict[str, dict[str, torch.Tensor]] = {}
    for name, module in _prunable_layers(model):
        magnitude = module.weight.detach().abs()
        out_max = magnitude.reshape(magnitude.shape[0], -1).amax(dim=1)
        in_max = _input_group_reduce(magnitude, _conv_groups(module), "max")
        masks[name] = {"output": out_max < threshold, "input": in_max < threshold}
    return masks


def removable_channels(output_sparse: list[torch.Tensor], input_sparse: list[torch.Tensor]) -> torch.Tensor:
    """For ONE channel group: True where the channel is sparse for every writer AND every reader.

    `output_sparse` holds one vector per layer writing the group (its "output" mask), `input_sparse` one per
    layer reading it. Removing exactly these channels is PruneTrain's "only the intersection of sparsified
    channels" rule; on a residual stream with several writers and readers it keeps the union of the dense
    channels ("channel union"). A group needs at least one writer and one reader: a channel nobody writes is
    the network input and one nobody reads is a network output, and neither may go.
    """
    if not output_sparse or not input_sparse:
        raise ValueError("removable_channels needs at least one writer and one reader of the channel group")
    vectors = [*output_sparse, *input_sparse]
    size = vectors[0].shape
    for vector in vectors:
        if vector.dim() != 1 or vector.shape != size or vector.dtype != torch.bool:
            raise ValueError(
                f"sparsity vectors must be 1-D bool of one length; got {vector.dtype} {tuple(vector.shape)}"
                f" next to {tuple(size)}"
            )
    removable = vectors[0].clone()
    for vector in vectors[1:]:
        removable &= vector.to(removable.device)
    return removable
