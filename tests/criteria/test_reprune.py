"""REPrune Eq. 8/9 allocation and Alg. 1 selection against hand-made examples and direct SciPy code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import linkage

from prunekit.criteria.reprune import (
    keep_count,
    reprune_allocate,
    reprune_allocation,
    reprune_keep,
    reprune_pruned_counts,
    reprune_select,
    reprune_select_detailed,
)

# ---------------------------------------------------------------- allocation (Eq. 8/9)


def test_allocation_without_ties_is_eq9_at_the_kth_smallest():
    gammas = [torch.tensor([0.1, 0.4, 0.9]), torch.tensor([0.2, 0.3, 0.8, 0.05])]
    # N = 7, s = 0.5 -> k = ceil(3.5) = 4; sorted: .05 .1 .2 .3 | .4 .8 .9 -> gamma* = 0.3.
    # Group 0: {0.1} <= 0.3 -> 1/3; group 1: {0.2, 0.3, 0.05} -> 3/4.
    assert reprune_allocation(gammas, 0.5) == pytest.approx([1 / 3, 3 / 4])
    assert reprune_pruned_counts(gammas, 0.5) == [1, 3]


def test_allocation_uses_absolute_scales():
    gammas = [torch.tensor([-0.9, 0.1]), torch.tensor([0.5, -0.05])]
    # |gamma|: .9 .1 | .5 .05; s = 0.5 -> k = 2 -> pruned {.05, .1}
    assert reprune_pruned_counts(gammas, 0.5) == [1, 1]


def test_allocation_extremes():
    gammas = [torch.rand(5), torch.rand(3)]
    assert reprune_allocation(gammas, 0.0) == [0.0, 0.0]
    assert reprune_allocation(gammas, 1.0) == [1.0, 1.0]
    with pytest.raises(ValueError):
        reprune_allocation(gammas, 1.5)


def test_allocation_pruned_zeros_tied_at_threshold():
    # Zeros are currently pruned channels. N = 6, s = 0.5 -> k = 3; gamma* = 0 and exactly the three zeros go.
    gammas = [torch.tensor([0.0, 0.0, 0.5, 0.7]), torch.tensor([0.0, 0.6])]
    assert reprune_pruned_counts(gammas, 0.5) == [2, 1]


def test_allocation_ties_straddling_the_quantile_are_shared_proportionally():
    # N = 7, s = 0.5 -> k = 4; sorted .2 .5 .5 .5 | .5 .5 .9; gamma* = .5, one channel strictly below (group
    # 0). Three of the five tied channels must go: group 0 has 3 tied, group 1 has 2 -> 3*3/5 = 1.8 and 3*2/5
    # = 1.2; floors 1 and 1, the leftover one goes to the larger remainder (group 0): group 0 prunes 1 + 2,
    # group 1 prunes 1.
    gammas = [torch.tensor([0.2, 0.5, 0.5, 0.5]), torch.tensor([0.5, 0.5, 0.9])]
    assert reprune_pruned_counts(gammas, 0.5) == [3, 1]
    assert reprune_allocation(gammas, 0.5) == pytest.approx([3 / 4, 1 / 3])


def test_allocation_equal_scales_give_uniform_sparsity():
    gammas = [torch.full((4,), 0.5), torch.full((6,), 0.5), torch.full((10,), 0.5)]
    assert reprune_allocation(gammas, 0.5) == pytest.approx([0.5, 0.5, 0.5])


def test_allocation_float_round_off_does_not_add_a_channel():
    gammas = [torch.arange(1.0, 101.0)]
    assert 0.07 * 100 > 7  # the trap: ceil(0.07 * 100) would be 8
    assert reprune_pruned_counts(gammas, 0.07) == [7]


def test_allocation_random_instances_against_numpy():
    rng = np.random.default_rng(0)
    for trial in range(200):
        sizes = rng.integers(1, 12, size=int(rng.integers(1, 5)))
        tie_heavy = trial % 2 == 0
        arrays = [(rng.integers(0, 4, size=n) / 4.0) if tie_heavy else rng.random(n) for n in sizes]
        s = float(rng.choice([rng.random(), 0.25, 0.5, 0.75, 0.1, 0.3]))
        counts = reprune_pruned_counts([torch.tensor(a) for a in arrays], s)
        total = int(sizes.sum())
        k = math.ceil(round(s * total, 9))
        assert sum(counts) == k
        fractions = reprune_allocation([torch.tensor(a) for a in arrays], s)
        for a, c, f in zip(arrays, counts, fractions, strict=True):
            assert keep_count(len(a), f) == len(a) - c  # callers recover the exact kept count
        if k == 0:
            continue
        threshold = np.sort(np.concatenate(arrays))[k - 1]
        for a, c in zip(arrays, counts, strict=True):
            assert (a < threshold).sum() <= c <= (a <= threshold).sum()
            if not tie_heavy:  # no ties: Eq. 9 exactly
                assert c == (a <= threshold).sum()


def test_keep_count():
    assert keep_count(10, 0.3) == 7
    assert keep_count(10, 0.35) == 7  # ceil(6.5)
    assert keep_count(64, 1.0) == 0
    assert all(keep_count(n, p / n) == n - p for n in range(1, 70) for p in range(n + 1))


# ---------------------------------------------------------------- selection (Alg. 1)


def _reference_cut(weight: np.ndarray, active: list[int], n_merge: int):
    """Independent Alg. 1 steps A-B: Ward per input channel, max_j of the n_merge-th merge height, union-find
    cut."""
    n_active = len(active)
    dendrograms = [
        linkage(weight[active, j].reshape(n_active, -1), method="ward") for j in range(weight.shape[1])
    ]
    height = max(z[n_merge - 1, 2] for z in dendrograms)
    labels = np.zeros((n_active, weight.shape[1]), dtype=int)
    for j, z in enumerate(dendrograms):
        parent = list(range(2 * n_active - 1))

        def root(x, parent=parent):
            while parent[x] != x:
                x = parent[x]
            return x

        for step, (a, b, dist, _) in enumerate(z):
            if dist <= height:
                parent[int(a)] = n_active + step
                parent[int(b)] = n_active + step
        labels[:, j] = [root(i) for i in range(n_active)]
    return height, labels


def _assert_greedy_replay(labels: np.ndarray, order_rows: list[int], coverage_rate: float):
    covered: set[tuple[int, int]] = set()
    remaining = set(range(labels.shape[0]))
    for row in order_rows:
        gains = {r: sum((j, labels[r, j]) not in covered for j in range(labels.shape[1])) for r in remaining}
        assert gains[row] == max(gains.values())
        covered |= {(j, labels[row, j]) for j in range(labels.shape[1])}
        remaining.remove(row)
    total = sum(len(set(labels[:, j])) for j in range(labels.shape[1]))
    assert coverage_rate == pytest.approx(len(covered) / total)


@pytest.mark.parametrize(
    ("shape", "sparsity"), [((12, 5, 3, 3), 0.4), ((16, 6, 1, 1), 0.5), ((9, 4, 3, 3), 0.8)]
)
def test_cut_height_clusters_and_greedy_against_scipy(shape, sparsity):
    torch.manual_seed(0)
    weight = torch.randn(shape, dtype=torch.float64)
    n = shape[0]
    n_keep = math.ceil((1 - sparsity) * n)
    n_merge = n - n_keep
    result = reprune_select_detailed(weight, sparsity, seed=3)
    height, labels = _reference_cut(weight.numpy(), list(range(n)), n_merge)
    counts = [len(set(labels[:, j])) for j in range(shape[1])]
    assert result.path == "clustered"
    assert result.n_merge == n_merge
    assert result.cut_height == height
    assert result.clusters_per_channel == counts
    assert (
        max(counts) == n - n_merge
    )  # the channel defining the height ends with exactly n - n_merge clusters
    assert all(c <= n - n_merge for c in counts)
    assert len(result.kept) == n_keep and result.kept == sorted(result.pick_order)
    _assert_greedy_replay(labels, result.pick_order, result.coverage_rate)


def test_active_subset():
    torch.manual_seed(1)
    weight = torch.randn(12, 4, 3, 3, dtype=torch.float64)
    active = [0, 2, 3, 5, 7, 8, 9, 11]
    result = reprune_select_detailed(weight, 0.5, seed=0, active=active)  # n_keep = 6 of 12, n_merge = 8 - 6
    assert result.n_merge == 2
    assert set(result.kept) <= set(active) and len(result.kept) == 6
    height, labels = _reference_cut(weight.numpy(), active, 2)
    assert result.cut_height == height
    _assert_greedy_replay(labels, [active.index(i) for i in result.pick_order], result.coverage_rate)


def test_nothing_removed_when_enough_filters_are_active():
    weight = torch.randn(12, 4, 3, 3)
    assert reprune_select(weight, 0.5, active=[1, 4, 6, 10]) == [1, 4, 6, 10]  # n_keep = 6 >= 4 active
    result = reprune_select_detailed(weight, 0.0)
    assert result.path == "keep_all" and result.kept == list(range(12)) and result.coverage_rate == 1.0
    assert reprune_select(weight, 0.9, active=[3]) == [3]  # n_active = 1


def test_full_sparsity_keeps_the_largest_l1_filters():
    torch.manual_seed(2)
    weight = torch.randn(8, 3, 3, 3)
    norms = weight.abs().sum(dim=(1, 2, 3))
    active = [0, 1, 2, 4, 6]
    best = sorted(active, key=lambda i: -float(norms[i]))
    result = reprune_select_detailed(weight, 1.0, active=active)
    assert result.path == "l1_fallback" and result.kept == [best[0]]
    assert reprune_select(weight, 1.0, active=active, min_channels=2) == sorted(best[:2])
    assert reprune_select(weight, 1.0, min_channels=0) == []


def test_min_channels_floors_the_kept_count():
    weight = torch.randn(12, 3, 3, 3)
    assert len(reprune_select(weight, 0.95)) == 1  # ceil(0.05 * 12) = 1
    assert len(reprune_select(weight, 0.95, min_channels=3)) == 3


def test_seed_determinism_and_tie_breaking():
    base = torch.randn(1, 4, 3, 3)
    weight = base.repeat(10, 1, 1, 1)  # identical filters: one cluster per channel, every gain ties
    result = reprune_select_detailed(weight, 0.5, seed=0)
    assert result.cut_height == 0.0 and result.clusters_per_channel == [1] * 4
    assert reprune_select(weight, 0.5, seed=7) == reprune_select(weight, 0.5, seed=7)
    assert len({tuple(reprune_select(weight, 0.5, seed=s)) for s in range(10)}) > 1


def test_invalid_inputs():
    weight = torch.randn(6, 2, 3, 3)
    with pytest.raises(ValueError):
        reprune_select(weight, 0.5, active=[0, 0, 1])
    with pytest.raises(ValueError):
        reprune_select(weight, 0.5, active=[6])
    with pytest.raises(ValueError):
        reprune_select(torch.full((6, 2, 3, 3), float("nan")), 0.5)
    with pytest.raises(ValueError):
        reprune_select(weight, -0.1)


def test_resnet56_sized_layer_keeps_half_and_reports_its_time():
    """A ResNet-56-sized layer (64 x 64 x 3 x 3) at s = 0.5: 32 filters kept, at most 32 clusters per input channel,
    and the selection's own time recorded. How long it takes is a benchmark figure (benchmarks/decision_speed.py),
    not a test assertion."""
    torch.manual_seed(3)
    result = reprune_select_detailed(torch.randn(64, 64, 3, 3), 0.5, seed=0)
    assert len(result.kept) == 32
    assert max(result.clusters_per_channel) == 32
    assert result.seconds > 0.0


def test_count_forms_agree_with_the_sparsity_forms():
    """reprune_allocate / reprune_keep take counts; at n = ceil(s N) / n_keep = ceil((1 - s) n) they are the
    sparsity-based functions exactly."""
    rng = np.random.default_rng(4)
    gammas = [torch.from_numpy(rng.integers(0, 6, size=n).astype(np.float64)) for n in (5, 9, 14)]  # with ties
    for k in range(0, 29):
        counts = reprune_allocate(gammas, k)
        assert sum(counts) == k and all(0 <= c <= g.numel() for c, g in zip(counts, gammas, strict=True))
        assert counts == reprune_pruned_counts(gammas, k / 28)
    weight = torch.randn(12, 3, 3, 3, generator=torch.Generator().manual_seed(2))
    for n_keep in range(1, 13):
        by_count = reprune_keep(weight, n_keep, seed=5, active=range(1, 11))
        by_sparsity = reprune_select_detailed(weight, (12 - n_keep) / 12, seed=5, active=range(1, 11))
        assert by_count.kept == by_sparsity.kept and by_count.path == by_sparsity.path
    with pytest.raises(ValueError, match="n_keep"):
        reprune_keep(weight, 0)
    with pytest.raises(ValueError, match="n_prune"):
        reprune_allocate(gammas, 29)



def _keep_before_fast_path(weight: torch.Tensor, n_keep: int, seed: int, active: list[int]):
    """Alg. 1 as computed before the fast path: public scipy linkage and fcluster per input channel, then the
    solver (whose own equality with its previous version is tested in test_coverage.py)."""
    from scipy.cluster.hierarchy import fcluster

    from prunekit.criteria.coverage import greedy_max_coverage

    w = weight.detach().to(torch.float64)[active]
    kernels = w.reshape(len(active), w.shape[1], -1).permute(1, 0, 2).numpy()
    dendrograms = [linkage(points, method="ward") for points in kernels]
    height = max(float(z[len(active) - n_keep - 1, 2]) for z in dendrograms)
    labels = np.stack([fcluster(z, t=height, criterion="distance") for z in dendrograms], axis=1)
    coverage = greedy_max_coverage(labels, n_keep, np.random.default_rng(seed))
    order = [active[i] for i in coverage.order]
    return height, [int(c) for c in labels.max(axis=0)], coverage.coverage_rate, order


@pytest.mark.parametrize("levels", [None, 3, 1])
@pytest.mark.parametrize("kernel", [1, 3])
def test_fast_path_selects_exactly_what_public_scipy_selects(levels, kernel):
    # levels: weights quantised to a few values (many tied distances and tied merge heights; 1 = all equal,
    # every filter identical) or None (continuous).
    generator = torch.Generator().manual_seed(10 * kernel + (levels or 0))
    for trial in range(4):
        n_out, n_in = (int(torch.randint(3, 40, (1,), generator=generator)),
                        int(torch.randint(1, 12, (1,), generator=generator)))
        weight = torch.randn(n_out, n_in, kernel, kernel, generator=generator)
        if levels is not None:
            weight = torch.randint(0, levels, weight.shape, generator=generator).float() / 4
        weight[:, 0] = 0.0  # a pruned input channel: one cluster
        active = sorted(torch.randperm(n_out, generator=generator)[: max(2, n_out - trial)].tolist())
        n_keep = int(torch.randint(1, len(active), (1,), generator=generator))
        result = reprune_keep(weight, n_keep, seed=trial, active=active)
        height, clusters, rate, order = _keep_before_fast_path(weight, n_keep, trial, active)
        assert result.cut_height == height
        assert result.clusters_per_channel == clusters
        assert result.coverage_rate == rate
        assert result.pick_order == order


def test_fast_linkage_and_cut_are_bit_equal_to_the_public_scipy_functions():
    from prunekit.criteria import reprune

    data = np.random.default_rng(5)
    for points in (data.normal(size=(50, 1)), data.normal(size=(30, 9)), data.integers(0, 3, (40, 1)) * 1.0):
        z = reprune._ward_linkage(points)
        assert np.array_equal(z, reprune._ward_linkage_public(points))
        for height in (0.0, float(np.median(z[:, 2])), float(z[-1, 2])):
            assert np.array_equal(reprune._cut_distance(z, height), reprune._cut_distance_public(z, height))


def test_scalar_kernel_distances_are_bit_equal_to_pdist():
    from scipy.spatial.distance import pdist

    from prunekit.criteria.reprune import _condensed_distances

    data = np.random.default_rng(6)
    for scale in (1e-160, 1e-30, 1e-3, 1.0, 1e4, 1e160):
        for points in (data.normal(size=(60, 1)) * scale, data.integers(-2, 3, (30, 1)) * scale, np.ones((5, 1))):
            assert np.array_equal(_condensed_distances(points), pdist(points))
    points = data.normal(size=(20, 9))
    assert np.array_equal(_condensed_distances(points), pdist(points))


def test_worker_processes_give_the_same_selection(monkeypatch):
    from prunekit.criteria import reprune

    pools = []

    class RecordingPool(reprune.ProcessPoolExecutor):
        def __init__(self, workers, **kwargs):
            pools.append(workers)
            super().__init__(workers, **kwargs)

    monkeypatch.setattr(reprune, "PARALLEL_MIN_WORK", 1)
    monkeypatch.setattr(reprune, "ProcessPoolExecutor", RecordingPool)
    weight = torch.randn(24, 10, 3, 3, generator=torch.Generator().manual_seed(7))
    alone = reprune_keep(weight, 9, seed=2)
    shared = reprune_keep(weight, 9, seed=2, workers=3)
    assert pools == [3]
    assert (shared.pick_order, shared.cut_height, shared.clusters_per_channel) == (
        alone.pick_order, alone.cut_height, alone.clusters_per_channel)
