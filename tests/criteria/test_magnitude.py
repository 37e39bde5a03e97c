import numpy as np
import pytest
import torch
from torch import nn

from prunekit.criteria.magnitude import (
    bn_scale_importance,
    fully_pruned_keep,
    keep_top,
    l1_filter_norms,
    prune_count,
)


def test_l1_filter_norms_matches_numpy_loop():
    weight = torch.randn(5, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    array = weight.numpy()
    expected = [sum(abs(float(v)) for v in array[o].ravel()) for o in range(5)]
    np.testing.assert_allclose(l1_filter_norms(weight).numpy(), expected, rtol=1e-6)


def test_l1_filter_norms_of_linear_weight_are_row_sums():
    weight = torch.tensor([[1.0, -2.0], [0.0, 0.5], [-3.0, 3.0]])
    assert l1_filter_norms(weight).tolist() == [3.0, 0.5, 6.0]


def test_l1_filter_norms_are_detached():
    weight = nn.Conv2d(2, 3, 3).weight
    assert not l1_filter_norms(weight).requires_grad


def test_bn_scale_importance_is_absolute_gamma():
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -2.0, 0.0, -0.1]))
    assert bn_scale_importance(bn).tolist() == pytest.approx([0.5, 2.0, 0.0, 0.1])
    with pytest.raises(ValueError):
        bn_scale_importance(nn.BatchNorm2d(4, affine=False))


def test_keep_top_picks_largest_and_breaks_ties_by_lower_index():
    scores = torch.tensor([1.0, 3.0, 2.0, 3.0, 2.0, 0.0])
    # 3.0 at 1 and 3, then 2.0 at 2 (beats 2.0 at 4 by index).
    assert keep_top(scores, 3) == [1, 2, 3]
    assert keep_top(scores, 0) == []
    assert keep_top(scores, 6) == [0, 1, 2, 3, 4, 5]
    assert keep_top(torch.ones(5), 2) == [0, 1]


def test_keep_top_agrees_with_brute_force_sort_on_random_scores():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=40).astype(np.float32)  # many ties
    for n_keep in (1, 7, 20, 39):
        expected = sorted(sorted(range(40), key=lambda i: (-scores[i], i))[:n_keep])
        assert keep_top(torch.from_numpy(scores), n_keep) == expected


def test_keep_top_rejects_bad_input():
    with pytest.raises(ValueError):
        keep_top(torch.ones(3), 4)
    with pytest.raises(ValueError):
        keep_top(torch.ones(2, 2), 1)
    with pytest.raises(ValueError):
        keep_top(torch.tensor([1.0, float("nan")]), 1)


@pytest.mark.parametrize(
    ("total", "fraction", "expected"),
    [(10, 0.7, 7), (100, 0.29, 29), (30, 0.1, 3), (7, 0.5, 3), (5, 0.0, 0), (5, 1.0, 5), (0, 0.5, 0)],
)
def test_prune_count_is_floor_without_float_error(total, fraction, expected):
    assert prune_count(total, fraction) == expected


def test_prune_count_rejects_fractions_outside_unit_interval():
    for fraction in (-0.1, 1.5, 70.0, float("nan")):
        with pytest.raises(ValueError):
            prune_count(10, fraction)


def test_fully_pruned_keep_is_the_min_channels_largest_l1_active_filters():
    weight = torch.randn(8, 2, 3, 3, generator=torch.Generator().manual_seed(3))
    norms = weight.abs().sum(dim=(1, 2, 3)).tolist()
    active = [0, 2, 3, 5, 7]
    by_norm = sorted(active, key=lambda i: -norms[i])
    assert fully_pruned_keep(weight, 2, active) == sorted(by_norm[:2])
    assert fully_pruned_keep(weight, 9, active) == active  # never more than the active filters
    assert fully_pruned_keep(weight, 1) == [max(range(8), key=lambda i: norms[i])]
    assert fully_pruned_keep(weight, 0, active) == []

