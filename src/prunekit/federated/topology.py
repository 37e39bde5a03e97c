"""The sparse topology: which tensors are masked, the initial random mask, the per-round readjustment schedule,
and one client's drop-by-magnitude / grow-by-dense-gradient update (prunekit.weights.dst).

Fixes of FedDST's quirks (research note 6.6), by construction:
1. double alpha: the ratio of round t is  alpha_t = alpha/2 (1 + cos(pi (t-1) / T_end))  (or alpha), 0 from
   T_end on, and the client prunes with alpha_t itself (dst.py switches on alpha^2/2 (1 + cos) and prunes with the
   constant alpha);
2. growth only among positions inactive after the drop (`grow_largest`), so exactly as many grow as drop;
3. grown weights are not uploaded as zeros: the readjustment happens before the last local epoch (or half-way
   through a single epoch), so grown weights (zero-initialised, optimizer state zeroed) train before upload.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from prunekit.federated.aggregate import target_count
from prunekit.federated.config import FederatedConfig
from prunekit.weights.dst import drop_count, drop_smallest, grow_largest


def maskable(model: nn.Module) -> list[str]:
    """Names of conv / linear weights (dim >= 2); biases and norm layers stay dense."""
    return [name for name, p in model.named_parameters() if p.dim() >= 2]


def initial_masks(model: nn.Module, density: float, seed: int) -> dict[str, np.ndarray]:
    """A uniform random mask per maskable tensor with round(density * numel) active positions (seeded)."""
    rng = np.random.default_rng(seed)
    params = dict(model.named_parameters())
    out = {}
    for name in maskable(model):
        p = params[name]
        flat = np.zeros(p.numel(), bool)
        flat[rng.permutation(p.numel())[: target_count(p.numel(), density)]] = True
        out[name] = flat.reshape(tuple(p.shape))
    return out


def round_ratio(fed: FederatedConfig, server_round: int) -> float:
    """alpha_t of 1-based round t: 0 unless t is a readjustment round (t % interval == 0) before T_end."""
    if fed.sparsity == 0 or fed.readjust_ratio == 0 or fed.readjust_interval == 0:
        return 0.0
    if server_round % fed.readjust_interval != 0:
        return 0.0
    t, t_end = server_round - 1, fed.decay_end * fed.rounds
    if t >= t_end:
        return 0.0
    if fed.ratio_decay == "constant":
        return fed.readjust_ratio
    return fed.readjust_ratio / 2 * (1 + math.cos(math.pi * t / t_end))


def readjust_step(steps_per_epoch: int, local_epochs: int) -> int:
    """The local step after which the client readjusts: the end of epoch E-1, or half-way through E = 1."""
    if local_epochs > 1:
        return steps_per_epoch * (local_epochs - 1)
    return max(1, steps_per_epoch // 2)


@torch.no_grad()
def drop_and_grow(weight: torch.Tensor, mask: torch.Tensor, grad: torch.Tensor, ratio: float) -> torch.Tensor:
    """RigL's update of one tensor: drop floor(ratio * active) smallest |w|, grow as many largest |grad| among
    the positions inactive after the drop (ties: lower flat index)."""
    k = drop_count(int(mask.sum()), ratio)
    if k == 0:
        return mask.clone()
    dropped = drop_smallest(weight.detach().abs().double().cpu(), mask.cpu(), k)
    return grow_largest(grad.detach().abs().double().cpu(), dropped, k)
