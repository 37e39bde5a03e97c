"""Weight-level magnitude pruning of the *remaining* weights (Frankle & Carbin 2019, IMP step 2; OpenLTH
`sparse_global`): prune the fraction `rate` of the still-active weights with the smallest |w|.

- `scope="global"` ranks all prunable tensors together (OpenLTH's default, better for deep conv nets);
  `scope="layer"` prunes `rate` of each tensor's remaining weights (the LTH LeNet code).
- `layer_rates` gives tensors their own rate, pruned on their own (the LTH LeNet code prunes the output layer at
  half the rate); `exclude` leaves tensors dense (OpenLTH ignores `fc.weight` for VGG and LeNet).
- Prunable tensors are the `.weight` of Conv and Linear layers; biases and norm layers stay dense.

Exactly `round(rate * remaining)` weights are removed per pruning unit; ties in |w| are broken by position (the
tensors in model order, each flattened), so the result is deterministic.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Literal

import torch
from torch import nn

from prunekit.errors import UserError

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
Scope = Literal["global", "layer"]


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether parameter `name` (or its module's name) matches one of the fnmatch `patterns`."""
    module = name.rpartition(".")[0]
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(module, p) for p in patterns)


def prunable_weights(model: nn.Module, exclude: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """{param name: weight} of the Conv/Linear layers of `model` in model order, minus those matching `exclude`."""
    exclude = list(exclude)
    out: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES) and isinstance(getattr(module, "weight", None), torch.Tensor):
            name = f"{module_name}.weight" if module_name else "weight"
            if not matches(name, exclude):
                out[name] = module.weight
    return out


def check_names(patterns: Iterable[str], names: Iterable[str], what: str) -> None:
    """UserError for a pattern that matches no prunable weight (a typo would silently prune everything)."""
    names = list(names)
    for pattern in patterns:
        if not any(matches(n, [pattern]) for n in names):
            raise UserError(f"{what} {pattern!r} matches no prunable weight (they are: {', '.join(names)})")


def _prune_smallest(scores: list[torch.Tensor], masks: list[torch.Tensor], rate: float) -> list[torch.Tensor]:
    """New masks with `round(rate * remaining)` of the remaining positions of lowest score turned off (ties: the
    earlier position goes first)."""
    flat_scores = torch.cat([s.detach().reshape(-1).float().cpu() for s in scores])
    flat_masks = torch.cat([m.reshape(-1).cpu() for m in masks])
    remaining = torch.nonzero(flat_masks).squeeze(1)
    count = int(round(rate * remaining.numel()))
    new = flat_masks.clone()
    if count:
        order = torch.sort(flat_scores[remaining], stable=True).indices
        new[remaining[order[:count]]] = False
    out, offset = [], 0
    for m in masks:
        out.append(new[offset: offset + m.numel()].reshape(m.shape))
        offset += m.numel()
    return out


def prune_by_score(scores: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None, rate: float,
                   scope: Scope = "global", layer_rates: Mapping[str, float] | None = None) -> dict[str, torch.Tensor]:
    """Masks after pruning `rate` of the remaining weights of lowest score (see the module docstring).

    `scores` and the returned masks are keyed by parameter name; a tensor without a mask in `masks` is fully
    active. `layer_rates` maps fnmatch patterns to a rate of their own (those tensors are pruned alone)."""
    _check_rate(rate, "rate")
    if scope not in ("global", "layer"):
        raise UserError(f"pruning scope must be 'global' or 'layer', got {scope!r}")
    layer_rates = dict(layer_rates or {})
    for pattern, r in layer_rates.items():
        _check_rate(r, f"layer rate of {pattern!r}")
    masks = masks or {}
    current = {n: masks[n].bool().cpu() if n in masks else torch.ones(s.shape, dtype=torch.bool)
               for n, s in scores.items()}
    units: list[tuple[list[str], float]] = []
    pooled: list[str] = []
    for name in scores:
        own = [r for p, r in layer_rates.items() if matches(name, [p])]
        if own:
            units.append(([name], own[0]))
        elif scope == "layer":
            units.append(([name], rate))
        else:
            pooled.append(name)
    if pooled:
        units.append((pooled, rate))
    out: dict[str, torch.Tensor] = {}
    for names, r in units:
        for name, mask in zip(names, _prune_smallest([scores[n] for n in names], [current[n] for n in names], r),
                              strict=True):
            out[name] = mask
    return {name: out[name] for name in scores}


def magnitude_masks(weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None, rate: float,
                    scope: Scope = "global", layer_rates: Mapping[str, float] | None = None) -> dict[str, torch.Tensor]:
    """Magnitude pruning: `prune_by_score` with score |w|."""
    return prune_by_score({n: w.detach().abs() for n, w in weights.items()}, masks, rate, scope, layer_rates)


def random_masks_like(masks: Mapping[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random masks with exactly the per-tensor active counts of `masks` (OpenLTH `randomly_prune`, layerwise):
    the random-pruning control of a lottery ticket."""
    out = {}
    for name, mask in masks.items():
        keep = int(mask.sum())
        order = torch.randperm(mask.numel(), generator=generator)
        new = torch.zeros(mask.numel(), dtype=torch.bool)
        new[order[:keep]] = True
        out[name] = new.reshape(mask.shape)
    return out


def _check_rate(rate: float, what: str) -> None:
    if not 0.0 <= float(rate) < 1.0:
        raise UserError(f"pruning {what} must lie in [0, 1), got {rate}")
