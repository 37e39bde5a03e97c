"""Drop and grow, the two operations of dynamic sparse training, as pure functions on tensors.

RigL (Evci et al., ICML 2020, Alg. 1): per layer, k = f(t) * |active| connections are dropped (the smallest
|w|, `drop_smallest`) and k grown among the positions *not active after the drop* (so a just-dropped connection
may come back) with the largest dense-gradient magnitude (`grow_largest`). SET (Mocanu et al. 2018) grows
uniformly at random among those positions (`grow_random`) and may drop sign-split (`drop_sign_split`: the
fraction of the smallest positive and of the largest negative weights, separately).

Conventions, fixed so that tests can compute the same thing directly:
- Active positions are never grow candidates: candidates are the indices where the post-drop mask is False
  (not "active positions with a zeroed score", which lets density drift: sparse_learning#22).
- Ties: among equal scores the lower flat index is dropped first and, for growth, taken first. `drop_scores`
  adds N(0, noise_std^2) noise from a seeded generator (RigL-TF adds N(0, 1e-5^2)) so exact ties such as
  freshly grown zero weights are broken at random, reproducibly.
- k = floor(fraction * |active|) (RigL-TF casts to int; rigl-torch the same).
"""

from __future__ import annotations

import math

import torch


def drop_fraction(step: int, alpha: float, t_end: int, schedule: str = "cosine", floor: float = 0.0) -> float:
    """The drop fraction at step t: cosine  alpha/2 (1 + cos(pi t / T_end))  (RigL eq. in §3, f_decay), or
    constant alpha; `floor` lifts the cosine to  floor + (alpha - floor)/2 (1 + cos(pi t / T_end))  (ITOP's
    CosineDecay with eta_min). Zero from T_end on."""
    if t_end <= 0 or step >= t_end:
        return 0.0
    if schedule == "constant":
        return alpha
    if schedule != "cosine":
        raise ValueError(f"unknown drop-fraction schedule {schedule!r}")
    return floor + (alpha - floor) / 2.0 * (1.0 + math.cos(math.pi * step / t_end))


def drop_count(active: int, fraction: float) -> int:
    """floor(fraction * active): connections dropped (and grown) in a layer."""
    return int(math.floor(fraction * active))


def drop_scores(weight: torch.Tensor, noise_std: float, generator: torch.Generator | None) -> torch.Tensor:
    """|w| plus N(0, noise_std^2) tie-breaking noise (float64 on the CPU, from `generator`)."""
    scores = weight.detach().abs().double().cpu()
    if noise_std > 0:
        scores = scores + noise_std * torch.randn(scores.shape, generator=generator, dtype=torch.float64)
    return scores


def drop_smallest(scores: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """The mask with the k active positions of smallest score turned off (ties: lower index first)."""
    flat = mask.flatten().cpu()
    active = flat.nonzero().squeeze(1)
    if k > active.numel():
        raise ValueError(f"cannot drop {k} of {active.numel()} active connections")
    order = torch.sort(scores.flatten().cpu()[active], stable=True).indices
    out = flat.clone()
    out[active[order[:k]]] = False
    return out.view(mask.shape)


def drop_sign_split(weight: torch.Tensor, mask: torch.Tensor, fraction: float) -> tuple[torch.Tensor, int]:
    """SET's removal: floor(fraction * n) of the smallest positive and of the largest negative active weights,
    separately (zeros count with the positives); returns (mask, connections dropped)."""
    w = weight.detach().flatten().cpu().double()
    flat = mask.flatten().cpu()
    out = flat.clone()
    dropped = 0
    for side in (flat & (w >= 0), flat & (w < 0)):
        index = side.nonzero().squeeze(1)
        k = drop_count(index.numel(), fraction)
        order = torch.sort(w[index].abs(), stable=True).indices
        out[index[order[:k]]] = False
        dropped += k
    return out.view(mask.shape), dropped


def grow_largest(scores: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """The mask with k inactive positions turned on: those of largest score (RigL: |dense gradient|; ties:
    lower index first). Only inactive positions are candidates."""
    flat = mask.flatten().cpu()
    candidates = (~flat).nonzero().squeeze(1)
    if k > candidates.numel():
        raise ValueError(f"cannot grow {k} connections with {candidates.numel()} inactive positions")
    order = torch.sort(scores.flatten().cpu().double()[candidates], descending=True, stable=True).indices
    out = flat.clone()
    out[candidates[order[:k]]] = True
    return out.view(mask.shape)


def grow_random(mask: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """The mask with k inactive positions, drawn uniformly at random without replacement, turned on (SET)."""
    flat = mask.flatten().cpu()
    candidates = (~flat).nonzero().squeeze(1)
    if k > candidates.numel():
        raise ValueError(f"cannot grow {k} connections with {candidates.numel()} inactive positions")
    pick = torch.randperm(candidates.numel(), generator=generator)[:k]
    out = flat.clone()
    out[candidates[pick]] = True
    return out.view(mask.shape)


def connections_changed(before: torch.Tensor, after: torch.Tensor) -> int:
    """Positions newly active after an update (= positions turned off, when the count is kept)."""
    return int((after.cpu() & ~before.cpu()).sum())


def in_time_rate(ever_active: dict[str, torch.Tensor]) -> float:
    """ITOP's R_s (Liu et al. 2021): weights ever active since initialisation over all maskable weights."""
    total = sum(m.numel() for m in ever_active.values())
    return sum(int(m.sum()) for m in ever_active.values()) / total if total else 1.0


__all__ = ["connections_changed", "drop_count", "drop_fraction", "drop_scores", "drop_sign_split", "drop_smallest",
           "grow_largest", "grow_random", "in_time_rate"]
