"""Network Slimming (Liu et al., ICCV 2017): L1 on BatchNorm scales and the global percentile threshold.

Training objective (paper Eq. 1): L = sum CE(f(x, W), y) + lambda * sum_{gamma} |gamma|, over all BN scales.
The official code adds the subgradient after `loss.backward()`: bn.weight.grad += s * sign(bn.weight)
(`bn_l1_subgradient_`); `bn_l1_penalty` is the same term as a differentiable loss (autograd's gradient of |x|
at 0 is 0 = sign(0), so both give identical gradients).

Selection (official `vggprune.py`): sort |gamma| of all chosen BN layers together and prune the smallest
fraction. Here the count is exact: n_prune = floor(percentile * total) channels go (see `prune_count`), and
channels whose |gamma| ties at the cut are pruned in (layer order, then channel index) order until the count
is reached. The official code instead keeps |gamma| > sorted[int(total * percent)], which prunes one channel
more than the fraction when values are distinct, and all tied values at the cut.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import torch
from torch import nn

from prunekit.criteria.magnitude import keep_top, prune_count

BatchNorm = nn.modules.batchnorm._BatchNorm


def bn_layers(model: nn.Module, modules: Collection[str] | None = None) -> list[tuple[str, BatchNorm]]:
    """Affine BN layers of the model: all of them, or exactly the named ones (a non-BN name is an error)."""
    named = dict(model.named_modules())
    if modules is None:
        return [(name, m) for name, m in named.items() if isinstance(m, BatchNorm) and m.weight is not None]
    found = []
    for name in modules:
        module = named.get(name)
        if not isinstance(module, BatchNorm) or module.weight is None:
            what = "no module" if module is None else f"a {type(module).__name__}, not an affine BatchNorm,"
            raise ValueError(f"network slimming: {name!r} is {what} in the model")
        found.append((name, module))
    return found


@torch.no_grad()
def l1_subgradient_(gammas: Iterable[torch.Tensor], s: float) -> None:
    """Add s * sign(gamma) to each gamma's gradient, in place (the hot-path form of `bn_l1_subgradient_`: pass
    the BN weights found once with `bn_layers`). A gamma that requires grad but got no gradient (unused in this
    forward) receives s * sign(gamma) as its gradient; frozen gammas are skipped."""
    for gamma in gammas:
        if not gamma.requires_grad:
            continue
        if gamma.grad is None:
            gamma.grad = torch.sign(gamma.detach()) * s
        else:
            gamma.grad.add_(torch.sign(gamma.detach()), alpha=s)


def bn_l1_subgradient_(model: nn.Module, s: float, modules: Collection[str] | None = None) -> None:
    """Add s * sign(gamma) to each BN weight's gradient, in place; call after backward (slimming `updateBN`).

    `modules` names the BN layers to regularise (default: every affine BN); see `l1_subgradient_`.
    """
    l1_subgradient_((bn.weight for _, bn in bn_layers(model, modules)), s)


def bn_l1_penalty(model: nn.Module, modules: Collection[str] | None = None) -> torch.Tensor:
    """sum |gamma| over the chosen BN layers (paper Eq. 1's g(gamma) = |gamma|), differentiable."""
    terms = [bn.weight.abs().sum() for _, bn in bn_layers(model, modules)]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()


def _global_order(gammas: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(|gamma| of all layers concatenated, ascending stable order): ties stay in (layer, index) order."""
    if not gammas:
        raise ValueError("network slimming needs at least one BN layer")
    scores = torch.cat([g.detach().abs().reshape(-1).to("cpu", torch.float64) for g in gammas])
    if torch.isnan(scores).any():
        raise ValueError("network slimming got NaN BN scales")
    return scores, torch.sort(scores, stable=True).indices


def _check_percentile(percentile: float) -> None:
    if not 0.0 <= percentile < 1.0:
        raise ValueError(
            f"network slimming percentile is the fraction of channels to prune, in [0, 1); got {percentile}"
        )


def slimming_threshold(gammas: list[torch.Tensor], percentile: float) -> float:
    """The global |gamma| cut: the smallest |gamma| that survives when floor(percentile * total) channels go.

    `percentile` is a fraction in [0, 1) (0.7 prunes 70%), as the official `--percent`. Every channel with
    |gamma| below the returned value is pruned, every channel above it kept; ties at the value are split by
    `slimming_keep` (module docstring).
    """
    _check_percentile(percentile)
    scores, order = _global_order(gammas)
    n_prune = prune_count(scores.numel(), percentile)
    return float(scores[order[n_prune]])


def slimming_keep(gammas: list[torch.Tensor], percentile: float, min_channels: int = 1) -> list[list[int]]:
    """Per layer, the ascending indices kept after pruning the globally smallest `percentile` of |gamma|.

    Exactly floor(percentile * total) channels are pruned (ties: module docstring), except where a layer
    would keep fewer than `min_channels`: that layer then keeps its `min_channels` largest |gamma| (ties:
    lower index), and the total pruned is that much smaller (no other layer is pruned more to make up for it).
    """
    _check_percentile(percentile)
    if min_channels < 0:
        raise ValueError(f"min_channels must be >= 0, got {min_channels}")
    scores, order = _global_order(gammas)
    pruned = torch.zeros(scores.numel(), dtype=torch.bool)
    pruned[order[: prune_count(scores.numel(), percentile)]] = True
    keep: list[list[int]] = []
    start = 0
    for gamma in gammas:
        size = gamma.numel()
        kept = (~pruned[start : start + size]).nonzero().flatten().tolist()
        floor = min(min_channels, size)
        if len(kept) < floor:
            kept = keep_top(scores[start : start + size], floor)
        keep.append(kept)
        start += size
    return keep
