import numpy as np
import pytest
import torch
from torch import nn

from prunekit.criteria.hrank import HRankCollector, collect_feature_map_ranks, feature_map_rank, hrank_keep

H, W = 8, 10


def _maps_of_rank(ranks: np.ndarray, seed: int) -> torch.Tensor:
    """(N, C, H, W) maps; map (n, c) is a sum of ranks[n, c] nonnegative rank-1 outer products u v^T."""
    rng = np.random.default_rng(seed)
    n_images, channels = ranks.shape
    maps = np.zeros((n_images, channels, H, W))
    for n in range(n_images):
        for c in range(channels):
            for _ in range(ranks[n, c]):
                maps[n, c] += np.outer(rng.uniform(0.1, 1.0, H), rng.uniform(0.1, 1.0, W))
    return torch.from_numpy(maps).float()


def test_feature_map_rank_recovers_planted_ranks():
    ranks = np.array([[0, 1, 3, 8, 2], [0, 2, 3, 8, 5], [0, 1, 3, 7, 6]])  # 8 = full rank for 8 x 10
    measured = feature_map_rank(_maps_of_rank(ranks, seed=0))
    assert measured.dtype == torch.float32
    np.testing.assert_allclose(measured.numpy(), ranks.mean(axis=0), rtol=1e-6)


def test_feature_map_rank_matches_numpy_matrix_rank_on_relu_maps():
    torch.manual_seed(1)
    maps = torch.relu(torch.randn(3, 4, 5, 3) @ torch.randn(3, 4, 3, 6))  # ReLU of rank-3 maps
    maps[0, 1] = 0.0
    expected = np.array(
        [np.mean([np.linalg.matrix_rank(maps[n, c].numpy()) for n in range(3)]) for c in range(4)]
    )
    np.testing.assert_allclose(feature_map_rank(maps).numpy(), expected)


def test_feature_map_rank_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        feature_map_rank(torch.ones(2, 3, 4))
    with pytest.raises(ValueError):
        feature_map_rank(torch.ones(0, 3, 4, 4))


class _PassThrough(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.maps = nn.Identity()
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.maps(x))


def test_collector_averages_ranks_over_batches_and_stops_at_max_batches():
    first = np.array([[1, 2, 4], [3, 2, 0]])
    second = np.array([[5, 2, 1], [1, 2, 0], [2, 2, 8]])
    ignored = np.array([[8, 8, 8]])
    batches = [
        (_maps_of_rank(first, 2), torch.zeros(2)),
        (_maps_of_rank(second, 3), torch.zeros(3)),
        (_maps_of_rank(ignored, 4), torch.zeros(1)),
    ]
    ranks = collect_feature_map_ranks(_PassThrough(), ["maps"], batches, max_batches=2)
    expected = np.concatenate([first, second]).mean(axis=0)  # per image, not per batch
    np.testing.assert_allclose(ranks["maps"].numpy(), expected, rtol=1e-6)


def test_collector_measures_relu_of_bn_output_in_eval_mode_and_cleans_up():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 2, 3))
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].bias.uniform_(-1.0, 0.5)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [torch.randn(4, 3, 6, 7), torch.randn(2, 3, 6, 7)]

    with HRankCollector(model, ["1"], max_batches=None) as collector:
        ranks = collector.collect(batches)["1"]
    assert model.training  # mode restored
    assert not model[1]._forward_hooks  # hooks removed
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # eval: stats untouched

    model.eval()
    per_map = []
    with torch.no_grad():
        for x in batches:
            maps = torch.relu(model[1](model[0](x))).numpy()
            per_map += [[np.linalg.matrix_rank(maps[n, c]) for c in range(6)] for n in range(len(x))]
    np.testing.assert_allclose(ranks.numpy(), np.mean(per_map, axis=0), rtol=1e-6)
    assert (ranks < 6).any()  # the ReLU really was applied: BN outputs alone are full rank


def test_collector_restores_each_module_mode():
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 2, 3))
    model.train()
    model[1].eval()  # a frozen BN inside a training model stays frozen
    collect_feature_map_ranks(model, ["1"], [torch.randn(2, 3, 6, 7)])
    assert [m.training for m in model.modules()] == [True, True, False, True, True]


def test_collector_refuses_a_module_that_runs_twice_per_forward():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Conv2d(1, 2, 1), relu, nn.Conv2d(2, 2, 1), relu)
    with pytest.raises(ValueError, match="ran 2 times"), HRankCollector(model, ["1"]) as collector:
        collector.collect([torch.randn(1, 1, 4, 4)])
    with pytest.raises(ValueError, match="no module"):
        HRankCollector(model, ["7"])


def test_hrank_keep_prunes_lowest_ranks_with_lower_index_first_on_ties():
    ranks = torch.tensor([3.0, 1.0, 2.0, 1.0, 5.0, 2.0])
    assert hrank_keep(ranks, 3) == [0, 4, 5]  # prunes 1 and 3 (rank 1), then 2 (rank 2, lower index than 5)
    assert hrank_keep(ranks, 0) == [0, 1, 2, 3, 4, 5]
    assert hrank_keep(ranks, 6) == [4]
    assert hrank_keep(ranks, 6, min_channels=0) == []
    assert hrank_keep(torch.full((3,), 2.0), 3) == [2]


def test_hrank_keep_agrees_with_brute_force_sort():
    rng = np.random.default_rng(6)
    ranks = rng.integers(0, 5, size=30).astype(np.float32)
    for rate in (0.1, 0.35, 0.6, 0.9):
        n_prune = int(rate * 30 + 1e-9)
        pruned = sorted(range(30), key=lambda i: (ranks[i], i))[:n_prune]
        assert hrank_keep(torch.from_numpy(ranks), n_prune) == sorted(set(range(30)) - set(pruned))


def test_hrank_keep_rejects_bad_counts():
    with pytest.raises(ValueError, match="n_prune"):
        hrank_keep(torch.ones(4), 5)
    with pytest.raises(ValueError, match="n_prune"):
        hrank_keep(torch.ones(4), -1)
    with pytest.raises(ValueError):
        hrank_keep(torch.ones(2, 2), 1)
