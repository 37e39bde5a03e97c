"""CHEX pieces (Hou et al., CVPR 2022) as pure functions of a conv weight: leverage-score column subset
selection, the cosine regrowth factor, projection-residual regrowth scores and their softmax sampling, and L1
filter selection.

Conventions follow the official CHEX code as summarised in research/reprune_chex.md section 3: a layer's
filter matrix is X = W.reshape(C_out, -1).T, of shape (C_in*kh*kw) x C_out, one column per filter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from prunekit.criteria.magnitude import keep_top, l1_filter_select


def _filter_matrix(weight: torch.Tensor) -> torch.Tensor:
    """Rows = filters, flattened, in float64 (the transpose of CHEX's X)."""
    if weight.dim() < 2:
        raise ValueError(
            f"weight must have an output dimension and at least one more, got shape {weight.shape}"
        )
    return weight.detach().reshape(weight.shape[0], -1).to(torch.float64)


def chex_leverage_scores(weight: torch.Tensor, rank: int) -> torch.Tensor:
    """Leverage scores of the filters: squared row norms of V_k, the top-`rank` right singular vectors of the
    (in*kh*kw) x out filter matrix X (CHEX column subset selection). Returns a float64 tensor of length out.

    CHEX's code ranks by the (unsquared) row norm; the order is the same.
    """
    matrix = _filter_matrix(weight)  # out x d, i.e. X^T; the right singular vectors of X are U of X^T
    n_out = matrix.shape[0]
    if not 0 <= rank <= min(matrix.shape):
        raise ValueError(f"rank must be in [0, {min(matrix.shape)}], got {rank}")
    u, _, _ = torch.linalg.svd(matrix, full_matrices=False)  # X^T = U S V^T  <=>  X = V S U^T
    v_k = u[:, :rank]  # rows = filters; singular values come sorted in descending order
    return (v_k**2).sum(dim=1) if rank else torch.zeros(n_out, dtype=torch.float64)


def chex_leverage_select(weight: torch.Tensor, n_keep: int, rank: int | None = None) -> list[int]:
    """CHEX pruning step: keep the `n_keep` filters with the largest leverage scores (deterministic top-k, as
    in the official code; ties go to the lower index). Returns sorted filter indices.

    rank defaults to n_keep: CHEX uses V_k with k = int((1 - s^l) C), its own kept count. Where the filter
    dimension d = in*kh*kw is smaller than the number of filters C (X cannot have C independent columns, e.g.
    1x1 downsample convs), CHEX falls back to the filter L1 norm, and so does this function. Filters that are
    currently masked (all zeros) score 0 in both cases (for leverage: as long as the rank does not exceed the
    number of independent non-zero filters), so they are kept only when nothing else is left.
    """
    matrix = _filter_matrix(weight)
    n_out, dim = matrix.shape
    if not 0 <= n_keep <= n_out:
        raise ValueError(f"n_keep must be in [0, {n_out}], got {n_keep}")
    if dim < n_out:
        return l1_filter_select(weight, n_keep)
    return keep_top(chex_leverage_scores(weight, n_keep if rank is None else rank), n_keep)


def regrowth_delta(t: int, t_prune: int, delta0: float) -> float:
    """CHEX cosine-decayed regrowth factor delta_t = delta_0 (1 + cos(pi t / T_prune)) / 2.

    Returns 0 from t = T_prune on (the mask is frozen after T_prune)."""
    if t_prune <= 0:
        raise ValueError(f"t_prune must be positive, got {t_prune}")
    if t < 0:
        raise ValueError(f"t must be non-negative, got {t}")
    if t >= t_prune:
        return 0.0
    return delta0 * (1.0 + math.cos(math.pi * t / t_prune)) / 2.0


def regrowth_scores(weight: torch.Tensor, kept: Sequence[int], candidates: Sequence[int]) -> torch.Tensor:
    """CHEX regrowth importance: for each candidate filter w_j, the norm ||w_j - P w_j||_2 of its residual
    outside the span of the kept filters, P the orthogonal projector onto that span (CHEX
    `projection_formula`).

    Computed in float64 from an orthonormal basis of the kept filters (SVD, numerical-rank cut-off as in
    torch.linalg.matrix_rank), so linearly dependent kept filters are fine. With nothing kept the score is the
    filter's norm. Pass the candidates' most-recently-used weights (CHEX restores them before scoring).
    Returns a float64 CPU tensor aligned with `candidates`.
    """
    matrix = _filter_matrix(weight).cpu()
    targets = matrix[list(candidates)]  # candidates x d
    if len(kept) == 0 or len(candidates) == 0:
        return targets.norm(dim=1)
    basis_rows = matrix[list(kept)]  # kept x d
    _, sing, vh = torch.linalg.svd(basis_rows, full_matrices=False)
    tol = sing.max() * max(basis_rows.shape) * torch.finfo(torch.float64).eps if sing.numel() else 0.0
    basis = vh[sing > tol]  # orthonormal rows spanning the kept filters
    residual = targets - (targets @ basis.T) @ basis
    return residual.norm(dim=1)


def sample_regrowth(
    scores: torch.Tensor, count: int, generator: torch.Generator, temperature: float = 1.0
) -> list[int]:
    """Sample `count` distinct positions of `scores` without replacement with probability softmax(scores / T)
    (successive sampling: each draw renormalises over the positions not drawn yet, like torch.multinomial with
    replacement=False). Returns positions into `scores` in draw order.

    Scores are NOT normalised before the softmax (temperature 1 by default): this follows the official CHEX
    code, which applies softmax to the raw residual norms (reprune_chex.md section 3.3). Large norms make this
    nearly argmax, small ones nearly uniform; pass `temperature` to change that deliberately. Implemented with
    the Gumbel-top-k trick (argsort of scores/T + Gumbel noise), which draws from exactly that distribution
    and cannot underflow the way an explicit softmax of large scores does. `generator` must be a CPU
    generator; the noise is drawn from it.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    values = scores.detach().reshape(-1).to(device="cpu", dtype=torch.float64)
    if not 0 <= count <= values.numel():
        raise ValueError(f"count must be in [0, {values.numel()}], got {count}")
    if count == 0:
        return []
    uniform = torch.rand(values.shape, generator=generator, dtype=torch.float64)
    uniform = uniform.clamp(min=torch.finfo(torch.float64).tiny)  # rand may return exactly 0
    gumbel = -torch.log(-torch.log(uniform))
    keys = values / temperature + gumbel
    return [int(i) for i in torch.sort(keys, descending=True, stable=True).indices[:count]]
