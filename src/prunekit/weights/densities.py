"""Layer densities of a sparse network: uniform, Erdős–Rényi (ER) and Erdős–Rényi-Kernel (ERK), exactly as RigL's
official code computes them (Evci et al., ICML 2020, §3(1); google-research/rigl `sparse_utils.py`,
`get_sparsities_erdos_renyi`, `get_mask_random`).

Terms. The *sparse layers* are the Conv/Linear weights that get a mask (`maskable_weights`); biases and norm
layers are always dense and are not counted. `density` is the target fraction of nonzeros over the sparse layers.
Layers made dense by `dense` (e.g. the first layer) or given a fixed density in `overrides` lie outside the
budget, as in RigL, where an unmasked layer is not among `all_masks` and a custom sparsity is "ignored in
erdos-renyi calculations".

- uniform: every sparse layer gets `density` (RigL keeps the first layer dense: `dense_first`).
- er:  raw_l = (n_in + n_out) / (n_in * n_out)                     (RigL's include_kernel=False)
- erk: raw_l = (sum(shape_l) / prod(shape_l)) ** erk_power_scale    (conv: n_in + n_out + kh + kw over the product)

  density_l = eps * raw_l, eps solving  eps * sum_{free} raw_l N_l = sum_{free} (N_l - z_l) - sum_{capped} z_l
  (z_l = floor(S N_l), S = 1 - density): layers whose density would exceed 1 are capped dense and eps is solved
  again until no layer exceeds 1 (all layers sharing the largest raw_l are capped at once, as in RigL).

Nonzeros: a layer of N weights at sparsity s keeps exactly N - floor(s N) weights (RigL's `get_n_zeros`), and
`random_masks` draws masks with exactly that many.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from prunekit.errors import UserError

Shape = tuple[int, ...]
RawScore = Callable[[Shape, float], float]


def _er_raw(shape: Shape, power: float) -> float:
    """(n_in + n_out) / (n_in n_out); PyTorch weights are (out, in, ...)."""
    n_out, n_in = shape[0], shape[1]
    return (n_in + n_out) / (n_in * n_out)


def _erk_raw(shape: Shape, power: float) -> float:
    """(sum of dims / product of dims) ** power (a permutation of the dims changes nothing)."""
    return float((sum(shape) / math.prod(shape)) ** power)


RAW_SCORES: dict[str, RawScore] = {"er": _er_raw, "erk": _erk_raw}
DISTRIBUTIONS = ("uniform", "er", "erk")


def maskable_weights(model: nn.Module) -> dict[str, Shape]:
    """Parameter name -> shape of every Conv/Linear weight, in module order (biases and norm layers stay dense)."""
    out: dict[str, Shape] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            out[f"{module_name}.weight" if module_name else "weight"] = tuple(module.weight.shape)
    return out


def n_zeros(size: int, sparsity: float) -> int:
    """floor(sparsity * size): RigL's `get_n_zeros`."""
    return int(math.floor(sparsity * size))


def _erdos_renyi_sparsities(shapes: Mapping[str, Shape], sparsity: float, raw: RawScore,
                            power: float) -> dict[str, float]:
    """RigL's eps search with dense capping over `shapes` (all in the budget)."""
    capped: set[str] = set()
    while True:
        rhs, divisor, raws = 0.0, 0.0, {}
        for name, shape in shapes.items():
            size = math.prod(shape)
            zeros = n_zeros(size, sparsity)
            if name in capped:
                rhs -= zeros
                continue
            rhs += size - zeros
            raws[name] = raw(shape, power)
            divisor += raws[name] * size
        if not raws:
            raise UserError(f"density {1 - sparsity} cannot be met: every sparse layer would have to be dense")
        eps = rhs / divisor
        largest = max(raws.values())
        if largest * eps <= 1:
            break
        capped.update(name for name, value in raws.items() if value == largest)
    return {name: 0.0 if name in capped else 1.0 - eps * raws[name] for name in shapes}


def layer_sparsities(shapes: Mapping[str, Shape], density: float, distribution: str = "erk",
                     erk_power_scale: float = 1.0, dense: Iterable[str] = (),
                     overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """Per-layer *sparsity* (fraction of zeros) for a target `density` over the sparse layers (module docstring).

    `dense` names layers kept dense, `overrides` maps layer names to a fixed density; both lie outside the budget."""
    if distribution not in DISTRIBUTIONS:
        raise UserError(f"sparsity distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
    if not 0.0 < density <= 1.0:
        raise UserError(f"density must lie in (0, 1], got {density}")
    overrides = dict(overrides or {})
    fixed = {name: 0.0 for name in dense} | {name: 1.0 - d for name, d in overrides.items()}
    unknown = sorted(set(fixed) - set(shapes))
    if unknown:
        raise UserError(f"dense layers / density overrides name {unknown}, which are not sparse layers "
                        f"(known: {', '.join(shapes)})")
    for name, d in overrides.items():
        if not 0.0 <= d <= 1.0:
            raise UserError(f"density override of {name!r} must lie in [0, 1], got {d}")
    free = {name: shape for name, shape in shapes.items() if name not in fixed}
    sparsity = 1.0 - density
    if distribution == "uniform" or not free:
        computed = {name: sparsity for name in free}
    else:
        computed = _erdos_renyi_sparsities(free, sparsity, RAW_SCORES[distribution], erk_power_scale)
    return {name: fixed.get(name, computed.get(name, 0.0)) for name in shapes}


def nonzero_counts(shapes: Mapping[str, Shape], sparsities: Mapping[str, float]) -> dict[str, int]:
    """N_l - floor(s_l N_l) active weights per layer (exactly what `random_masks` draws)."""
    return {name: math.prod(shape) - n_zeros(math.prod(shape), sparsities[name]) for name, shape in shapes.items()}


def layer_densities(shapes: Mapping[str, Shape], density: float, distribution: str = "erk",
                    erk_power_scale: float = 1.0, dense: Iterable[str] = (),
                    overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """The realised per-layer densities (nonzeros / size) of `layer_sparsities`' allocation."""
    sparsities = layer_sparsities(shapes, density, distribution, erk_power_scale, dense, overrides)
    counts = nonzero_counts(shapes, sparsities)
    return {name: counts[name] / math.prod(shape) for name, shape in shapes.items()}


def random_masks(shapes: Mapping[str, Shape], counts: Mapping[str, int],
                 generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A boolean mask per layer with exactly `counts[name]` True entries at uniformly random positions."""
    masks = {}
    for name, shape in shapes.items():
        size = math.prod(shape)
        flat = torch.zeros(size, dtype=torch.bool)
        flat[torch.randperm(size, generator=generator)[: counts[name]]] = True
        masks[name] = flat.view(shape)
    return masks


def sparse_layer_choice(shapes: Mapping[str, Shape], dense_first: bool, dense_last: bool,
                        dense_layers: Iterable[str] = ()) -> list[str]:
    """The names kept dense: the first and/or last sparse layer (module order) and any named ones."""
    names = list(shapes)
    chosen = list(dense_layers)
    if dense_first and names:
        chosen.append(names[0])
    if dense_last and names:
        chosen.append(names[-1])
    return sorted(set(chosen), key=lambda n: names.index(n) if n in names else -1)


__all__ = ["DISTRIBUTIONS", "layer_densities", "layer_sparsities", "maskable_weights", "n_zeros", "nonzero_counts",
           "random_masks", "sparse_layer_choice"]
