"""Supermask criteria and re-initialisations of the kept weights (Zhou, Lan, Liu & Yosinski, NeurIPS 2019,
"Deconstructing Lottery Tickets"; their `get_weight_init.py` and `train_lottery.py`).

A criterion scores each weight from its initial value w_i and final value w_f; the lowest-scoring fraction of the
*remaining* weights of each layer is pruned (`mask_by_criterion`, layer-wise as in the paper; ties broken by
position where the paper breaks them at random). `<criterion>_same_sign` prunes first the weights whose sign
flipped between init and end of training, `_diff_sign` those whose sign did not.

A re-initialisation gives the kept weights new values (`reinitialize`); `masked_init` puts a mask on the untrained
initial weights (the supermask experiment: the network is evaluated without any training).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from prunekit.errors import UserError
from prunekit.registry import Registry
from prunekit.weights.magnitude import prune_by_score

Score = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
CRITERIA: Registry[Score] = Registry("supermask criterion")
Reinit = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
REINITS: Registry[Reinit] = Registry("re-initialisation")


def _ranks(values: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Rank (0 = smallest) of each remaining value among the remaining ones; pruned positions get -1."""
    out = torch.full(values.shape, -1.0)
    flat = values.reshape(-1)[alive.reshape(-1)]
    order = torch.sort(flat, stable=True).indices
    ranks = torch.empty_like(order, dtype=torch.float32)
    ranks[order] = torch.arange(order.numel(), dtype=torch.float32)
    out.reshape(-1)[alive.reshape(-1)] = ranks
    return out


CRITERIA.register("large_final")(lambda wi, wf, alive, g: wf.abs())
CRITERIA.register("small_final")(lambda wi, wf, alive, g: -wf.abs())
CRITERIA.register("large_init")(lambda wi, wf, alive, g: wi.abs())
CRITERIA.register("small_init")(lambda wi, wf, alive, g: -wi.abs())
CRITERIA.register("magnitude_increase")(lambda wi, wf, alive, g: wf.abs() - wi.abs())
CRITERIA.register("movement")(lambda wi, wf, alive, g: (wf - wi).abs())
CRITERIA.register("random")(lambda wi, wf, alive, g: torch.rand(wi.shape, generator=g))


@CRITERIA.register("large_init_large_final")
def large_init_large_final(wi: torch.Tensor, wf: torch.Tensor, alive: torch.Tensor, g: torch.Generator
                           ) -> torch.Tensor:
    """Kept: both |w_i| and |w_f| above a common percentile. The minimum of the two ranks orders the weights so
    that keeping its top k is exactly that quadrant (the paper binary-searches the percentile)."""
    return torch.minimum(_ranks(wi.abs(), alive), _ranks(wf.abs(), alive))


@CRITERIA.register("small_init_small_final")
def small_init_small_final(wi: torch.Tensor, wf: torch.Tensor, alive: torch.Tensor, g: torch.Generator
                           ) -> torch.Tensor:
    return torch.minimum(_ranks(-wi.abs(), alive), _ranks(-wf.abs(), alive))


def criterion_scores(name: str, wi: torch.Tensor, wf: torch.Tensor, alive: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
    """Scores of criterion `name` (with an optional `_same_sign` / `_diff_sign` suffix); higher is kept."""
    base, sign = name, None
    for suffix in ("_same_sign", "_diff_sign"):
        if name.endswith(suffix):
            base, sign = name[: -len(suffix)], suffix
    if base not in CRITERIA:
        raise UserError(f"unknown supermask criterion {name!r} (known: {', '.join(CRITERIA.names())}, each also "
                        f"with _same_sign or _diff_sign)")
    wi, wf = wi.detach().float().cpu(), wf.detach().float().cpu()
    score = CRITERIA.get(base)(wi, wf, alive, generator).float()
    if sign is not None:
        flipped = torch.sign(wi) != torch.sign(wf)
        demoted = flipped if sign == "_same_sign" else ~flipped
        score = torch.where(demoted, score - (score.abs().max() + 1) * 2, score)  # below every kept one
    return score


def mask_by_criterion(name: str, init: Mapping[str, torch.Tensor], final: Mapping[str, torch.Tensor],
                      masks: Mapping[str, torch.Tensor] | None, rate: float,
                      layer_rates: Mapping[str, float] | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Masks pruning `rate` of each layer's remaining weights of lowest criterion score (Zhou et al. Sec. 3)."""
    generator = torch.Generator().manual_seed(seed)
    masks = masks or {}
    scores = {}
    for n in final:
        alive = masks[n].bool().cpu() if n in masks else torch.ones(final[n].shape, dtype=torch.bool)
        scores[n] = criterion_scores(name, init[n], final[n], alive, generator)
    return prune_by_score(scores, masks, rate, scope="layer", layer_rates=layer_rates)


# ---------------------------------------------------------------------- re-initialisations of the kept weights
@REINITS.register("reinit")
def reinit(wi: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The layer's initial values, shuffled over the whole layer (Zhou's random_reinit)."""
    flat = wi.reshape(-1)
    return flat[torch.randperm(flat.numel(), generator=g)].reshape(wi.shape) * mask


@REINITS.register("reshuffle")
def reshuffle(wi: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The kept weights' initial values, shuffled among the kept positions (random_reshuffle)."""
    out = torch.zeros_like(wi)
    kept = wi[mask]
    out[mask] = kept[torch.randperm(kept.numel(), generator=g)]
    return out


@REINITS.register("signed_reinit")
def signed_reinit(wi: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Shuffled magnitudes of the layer's initial values, each weight keeping its own initial sign."""
    return reinit(wi, torch.ones_like(mask), g).abs() * torch.sign(wi) * mask


@REINITS.register("signed_constant")
def signed_constant(wi: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """sign(w_i) times the standard deviation of the layer's initial weights (Zhou et al. Sec. 4)."""
    return torch.sign(wi) * wi.float().std(unbiased=False).to(wi.dtype) * mask


def masked_init(init: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor], reinit_name: str | None = None,
                seed: int = 0) -> dict[str, torch.Tensor]:
    """The initial state_dict with `masks` applied (and the kept weights re-initialised by `reinit_name`)."""
    generator = torch.Generator().manual_seed(seed)
    out = {k: v.clone() for k, v in init.items()}
    for name, mask in masks.items():
        mask = mask.bool().to(out[name].device)
        if reinit_name is None:
            out[name] = out[name] * mask
        else:
            if reinit_name not in REINITS:
                raise UserError(f"unknown re-initialisation {reinit_name!r} (known: {', '.join(REINITS.names())})")
            out[name] = REINITS.get(reinit_name)(init[name], mask, generator)
    return out
