"""REPrune (Park et al., AAAI 2024) as pure functions of tensors: per-layer sparsity from a global BN-scale
quantile (Eq. 8/9) and channel selection by kernel representatives (Alg. 1: per-input-channel Ward clustering
cut at one layer-wise height, then greedy maximum cluster coverage).

Reconstruction notes and edge cases are in research/reprune_chex.md sections 1-2.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from prunekit.criteria.coverage import greedy_max_coverage
from prunekit.criteria.magnitude import fully_pruned_keep
from prunekit.criteria.ward_scalar import scalar_ward_cut

# Products such as 0.7 * 10 come out as 7.000000000000001 in floating point; rounding to this many decimals
# before ceil() keeps such counts exact.
_COUNT_DECIMALS = 9


def _ceil_count(value: float) -> int:
    return math.ceil(round(value, _COUNT_DECIMALS))


def _check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be between 0 and 1, got {sparsity}")


def keep_count(n: int, sparsity: float) -> int:
    """Channels a group of `n` keeps at sparsity s: ceil((1 - s) n) (REPrune Alg. 1), robust to float
    round-off, so keep_count(n, p / n) == n - p exactly."""
    _check_sparsity(sparsity)
    return _ceil_count((1.0 - sparsity) * n)


def reprune_pruned_counts(gammas: Sequence[torch.Tensor], sparsity: float) -> list[int]:
    """Channels pruned per group by the global BN-scale threshold (REPrune Eq. 8/9) at global sparsity s: the
    `reprune_allocate` of n_prune = ceil(s * N) channels.

    See `reprune_allocation` for the quantile definition and the tie rule.
    """
    _check_sparsity(sparsity)
    total = sum(g.numel() for g in gammas)
    return reprune_allocate(gammas, _ceil_count(sparsity * total))


def reprune_allocate(gammas: Sequence[torch.Tensor], n_prune: int) -> list[int]:
    """Share `n_prune` pruned channels among the groups by the global BN-scale threshold (REPrune Eq. 8/9): the
    n_prune smallest |gamma| of all groups go (ties: `reprune_allocation`). Returns a count per group."""
    values = [g.detach().reshape(-1).abs().to(device="cpu", dtype=torch.float64) for g in gammas]
    total = sum(v.numel() for v in values)
    if not 0 <= n_prune <= total:
        raise ValueError(f"n_prune must be in [0, {total}], got {n_prune}")
    if n_prune == 0:
        return [0] * len(values)
    threshold = torch.sort(torch.cat(values)).values[n_prune - 1]
    below = [int((v < threshold).sum()) for v in values]
    tied = [int((v == threshold).sum()) for v in values]
    # Exactly `need` of the channels tied at the threshold are pruned; share them in proportion to each
    # group's tied count (largest remainder; equal remainders go to the earlier group).
    need = n_prune - sum(below)
    total_tied = sum(tied)
    shares = [need * t // total_tied for t in tied]
    remainders = [need * t % total_tied for t in tied]
    leftover = need - sum(shares)
    for index in sorted(range(len(tied)), key=lambda i: -remainders[i])[:leftover]:
        shares[index] += 1
    return [b + s for b, s in zip(below, shares, strict=True)]


def reprune_allocation(gammas: Sequence[torch.Tensor], sparsity: float) -> list[float]:
    """Per-group channel sparsity s^l from the global BN-scale quantile (REPrune Eq. 8/9).

    gammas: the BN scales of every prunable group, with 0 at currently pruned channels (as under masked
    training).

    Quantile (Eq. 8): gamma* = inf{|gamma| : F(|gamma|) >= s}, F the empirical CDF over all N scales, i.e. the
    k-th smallest |gamma| with k = ceil(s * N) (no interpolation, unlike torch.quantile); s = 0 prunes
    nothing. Eq. 9: s^l = fraction of group l's channels with |gamma| <= gamma*.

    Ties: when several scales tie at gamma*, counting all of them would prune more than k channels. Instead
    exactly k channels are pruned in total: everything below gamma*, plus the needed number of tied ones,
    shared among groups in proportion to their tied counts (so equal scales everywhere, e.g. at
    initialisation, give a uniform allocation). Without ties this is Eq. 9 exactly. `keep_count(n_l, s^l)`
    recovers each group's kept count exactly. Empty groups get 0.0.
    """
    counts = reprune_pruned_counts(gammas, sparsity)
    return [c / g.numel() if g.numel() else 0.0 for c, g in zip(counts, gammas, strict=True)]


@dataclass(frozen=True)
class SelectionResult:
    """Outcome of one REPrune Alg. 1 selection for one conv.

    path: "clustered" (Alg. 1 ran), "keep_all" (n_keep >= active filters, nothing removed) or "l1_fallback"
    (s^l = 1: clustering impossible, the `min_channels` largest-L1 filters kept).
    cut_height: the layer-wise cut-off h_l (SciPy Ward height), None unless clustered.
    clusters_per_channel: cluster count of every input channel after the cut (n_active each for "keep_all",
    empty for "l1_fallback"). coverage_rate: covered clusters / all clusters (None for "l1_fallback").
    pick_order: kept filter indices in the order the greedy solver picked them.
    """

    kept: list[int]
    path: str
    n_merge: int
    cut_height: float | None
    clusters_per_channel: list[int]
    coverage_rate: float | None
    pick_order: list[int]
    seconds: float


def _ward_linkage_public(points: np.ndarray) -> np.ndarray:
    return linkage(points, method="ward")


def _cut_distance_public(z: np.ndarray, height: float) -> np.ndarray:
    return fcluster(z, t=height, criterion="distance")


try:
    # The same compiled routines scipy's linkage(method="ward") and fcluster(criterion="distance") call, without
    # their per-call validation and array-API dispatch, which cost about a third of a decision on ResNet-50's
    # 2048-input layers (benchmarks/decision_speed.py). The inputs are checked here instead (finite float64
    # kernels); tests/criteria/test_reprune.py checks bit-equality with the public functions. Falls back to
    # the public functions if a SciPy release moves them.
    from scipy.cluster import _hierarchy
    from scipy.cluster.hierarchy import _LINKAGE_METHODS

    _WARD = _LINKAGE_METHODS["ward"]

    def _ward_linkage(points: np.ndarray) -> np.ndarray:
        """scipy linkage(points, "ward"): nearest-neighbour chain on the condensed Euclidean distances."""
        return _hierarchy.nn_chain(_condensed_distances(points), points.shape[0], _WARD)

    def _cut_distance(z: np.ndarray, height: float) -> np.ndarray:
        """scipy fcluster(z, height, criterion="distance"): merges at distance <= height applied."""
        n = z.shape[0] + 1
        labels = np.zeros(n, dtype="i")
        _hierarchy.cluster_dist(np.ascontiguousarray(z, dtype=np.float64), labels, float(height), n)
        return labels

except (ImportError, AttributeError, KeyError):  # pragma: no cover - depends on the SciPy release
    _ward_linkage = _ward_linkage_public
    _cut_distance = _cut_distance_public


# Below this the square of a difference is subnormal (and above the square root of the largest double it
# overflows), so sqrt(d * d) may differ from |d|.
_SQUARE_EXACT = (1.5e-154, 1e153)


@functools.lru_cache(maxsize=4)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, 1)


def _condensed_distances(points: np.ndarray) -> np.ndarray:
    """pdist(points) (Euclidean, condensed), bit for bit. For scalar kernels (1x1 convs) |x_i - x_j| directly:
    pdist computes sqrt((x_i - x_j)^2), and in binary floating point with round-to-nearest sqrt(RN(d * d)) = |d|
    exactly unless d * d under- or overflows, where pdist is used instead. About 2x cheaper than pdist's
    per-call overhead plus square root on 512 points."""
    if points.shape[1] != 1:
        return pdist(points)
    x = points[:, 0]
    first, second = _pairs(points.shape[0])
    distances = np.abs(x[first] - x[second])
    if distances.size:
        smallest = np.min(distances, where=distances > 0, initial=np.inf)
        if smallest < _SQUARE_EXACT[0] or distances.max() > _SQUARE_EXACT[1]:
            return pdist(points)
    return distances


# Below this much clustering work (channels x points^2) starting worker processes costs more than it saves; a
# ResNet-50 layer3 3x3 conv (256 channels of 256 kernels) is 2^24.
PARALLEL_MIN_WORK = 2**24


def _linkages(kernels: np.ndarray) -> list[np.ndarray]:
    return [_ward_linkage(points) for points in kernels]


def _parallel_linkages(kernels: np.ndarray, workers: int) -> list[np.ndarray]:
    """Every channel's Ward dendrogram, over `workers` forked processes when the layer is large enough.

    SciPy's nn_chain holds the GIL, so threads cannot share the work; forked workers inherit the loaded modules
    (no import cost) and each clusters one contiguous block of channels. Where fork is unavailable (macOS,
    Windows) or a worker dies, the channels are clustered here, one after another: the same result.
    """
    n_channels, n_points = kernels.shape[:2]
    if (workers <= 1 or n_channels < 2 or n_channels * n_points**2 < PARALLEL_MIN_WORK
            or "fork" not in multiprocessing.get_all_start_methods()):
        return _linkages(kernels)
    blocks = np.array_split(kernels, min(workers, n_channels))
    try:
        with ProcessPoolExecutor(len(blocks), mp_context=multiprocessing.get_context("fork")) as pool:
            return [z for block in pool.map(_linkages, blocks) for z in block]
    except (BrokenProcessPool, OSError):
        return _linkages(kernels)


def _kernel_sets(weight: torch.Tensor, active: list[int]) -> np.ndarray:
    """Array (in_channels, n_active, kh*kw): for every input channel, the kernels of the active filters."""
    w = weight.detach().to(device="cpu", dtype=torch.float64)[active]
    kernels = w.reshape(len(active), w.shape[1], -1).permute(1, 0, 2).numpy()
    if not np.isfinite(kernels).all():
        raise ValueError("weight contains NaN or inf; cannot cluster kernels")
    return kernels


def _active_filters(weight: torch.Tensor, active: Sequence[int] | None) -> list[int]:
    """`active` sorted (default: every filter), after checking the weight's shape and the indices."""
    if weight.dim() < 2 or weight.shape[1] == 0:
        raise ValueError(f"weight must be (out, in, ...) with in >= 1, got shape {tuple(weight.shape)}")
    n_filters = weight.shape[0]
    active_list = list(range(n_filters)) if active is None else sorted(int(i) for i in active)
    if len(set(active_list)) != len(active_list) or any(not 0 <= i < n_filters for i in active_list):
        raise ValueError(f"active must be distinct filter indices in [0, {n_filters}), got {active_list}")
    return active_list


def reprune_keep(weight: torch.Tensor, n_keep: int, seed: int = 0,
                 active: Sequence[int] | None = None, workers: int = 1) -> SelectionResult:
    """REPrune Alg. 1 for the conv producing one channel group: keep `n_keep` >= 1 of the `active` filters.

    1. n_merge = n_active - n_keep (nothing is removed when n_keep >= n_active: path "keep_all").
    2. For every input channel j, Ward-cluster the kernels {W[i, j] : i active} (scipy linkage,
       method="ward"; scalar kernels of 1x1 convs through `scalar_ward_cut`, which gives the same cut).
    3. Cut height h = max_j d_j, d_j the n_merge-th merge distance of channel j (Eq. 4); cut every dendrogram
       at h, applying merges at distance <= h (Eq. 5; fcluster's "distance" criterion is inclusive), so each
       channel has at most n_active - n_merge clusters and the channel attaining h exactly that many (barring
       tied merges).
    4. Greedy maximum cluster coverage (Eq. 6-7) with seeded random tie-breaking until n_keep filters are
       picked.

    n_keep = 0 (s^l = 1) has no clustering (Ward cannot cut to 0 clusters): use `fully_pruned_keep`.
    workers > 1 clusters a large layer's channels in that many forked processes (same result).
    """
    start = time.perf_counter()
    active_list = _active_filters(weight, active)
    if n_keep < 1:
        raise ValueError(f"n_keep must be >= 1 (s^l = 1 is fully_pruned_keep's case), got {n_keep}")
    n_active = len(active_list)
    n_in = weight.shape[1]
    if n_keep >= n_active:
        return SelectionResult(
            active_list, "keep_all", 0, None, [n_active] * n_in, 1.0, active_list, time.perf_counter() - start
        )

    n_merge = n_active - n_keep  # 1 <= n_merge <= n_active - 1 here, so n_active >= 2
    kernels = _kernel_sets(weight, active_list)
    if kernels.shape[2] == 1:
        cut_height, labels = scalar_ward_cut(kernels[:, :, 0], n_merge, _ward_linkage, _cut_distance)
    else:
        dendrograms = _parallel_linkages(kernels, workers)
        cut_height = max(float(z[n_merge - 1, 2]) for z in dendrograms)
        labels = np.stack([_cut_distance(z, cut_height) for z in dendrograms], axis=1)

    rng = np.random.default_rng(seed)
    coverage = greedy_max_coverage(labels, n_keep, rng)
    order = [active_list[i] for i in coverage.order]
    return SelectionResult(
        kept=sorted(order),
        path="clustered",
        n_merge=n_merge,
        cut_height=cut_height,
        clusters_per_channel=[int(c) for c in labels.max(axis=0)],
        coverage_rate=coverage.coverage_rate,
        pick_order=order,
        seconds=time.perf_counter() - start,
    )


def reprune_select_detailed(
    weight: torch.Tensor,
    sparsity: float,
    seed: int = 0,
    active: Sequence[int] | None = None,
    min_channels: int = 1,
    workers: int = 1,
) -> SelectionResult:
    """REPrune Alg. 1 at a layer sparsity s^l; see `reprune_select` for the arguments.

    n_keep = ceil((1 - s^l) n), n = weight.shape[0], at least `min_channels`, then `reprune_keep`; s^l = 1
    (n_keep = 0) keeps the `fully_pruned_keep` filters instead (path "l1_fallback").
    """
    start = time.perf_counter()
    _check_sparsity(sparsity)
    if min_channels < 0:
        raise ValueError(f"min_channels must be >= 0, got {min_channels}")
    active_list = _active_filters(weight, active)
    n_keep = keep_count(weight.shape[0], sparsity)
    if n_keep == 0:
        kept = fully_pruned_keep(weight, min_channels, active_list)
        return SelectionResult(kept, "l1_fallback", 0, None, [], None, kept, time.perf_counter() - start)
    return reprune_keep(weight, max(n_keep, min_channels), seed, active_list, workers)


def reprune_select(
    weight: torch.Tensor,
    sparsity: float,
    seed: int = 0,
    active: Sequence[int] | None = None,
    min_channels: int = 1,
    workers: int = 1,
) -> list[int]:
    """REPrune Alg. 1: the sorted indices of the filters to keep.

    - weight: (out, in, kh, kw) of the conv producing the group; any trailing kernel shape, 1x1 kernels are
      scalars. Slice away pruned input channels first (hard-pruning bookkeeping): an all-zero input channel
      collapses into one cluster, which does not change the selection but inflates the coverage rate.
    - sparsity: the group's s^l, e.g. from `reprune_allocation`; n_keep = ceil((1 - s^l) * out).
    - seed: seed of the tie-breaking generator (numpy default_rng).
    - active: the currently active filters (default all); only they are clustered and returned.
    - min_channels: kept when s^l = 1 (the largest-L1 active filters, no clustering) and a floor on n_keep
      otherwise.
    - workers: processes that cluster a large layer's channels (forked; 1 = none).

    Nothing is removed when n_keep >= the number of active filters.
    """
    return reprune_select_detailed(weight, sparsity, seed, active, min_channels, workers).kept
