"""Drop and grow against direct computations on small tensors: Python sorts of (score, index) pairs, ties
included, active positions never grown, the cosine schedule by hand, R_s counted by hand."""

import math

import pytest
import torch

from prunekit.weights.dst import (
    connections_changed,
    drop_count,
    drop_fraction,
    drop_scores,
    drop_sign_split,
    drop_smallest,
    grow_largest,
    grow_random,
    in_time_rate,
)


def direct_drop(scores, mask, k):
    flat_s, flat_m = scores.flatten().tolist(), mask.flatten().tolist()
    active = sorted((s, i) for i, (s, m) in enumerate(zip(flat_s, flat_m, strict=True)) if m)
    out = list(flat_m)
    for _, i in active[:k]:
        out[i] = False
    return torch.tensor(out).view(mask.shape)


def direct_grow(scores, mask, k):
    flat_s, flat_m = scores.flatten().tolist(), mask.flatten().tolist()
    inactive = sorted((-s, i) for i, (s, m) in enumerate(zip(flat_s, flat_m, strict=True)) if not m)
    out = list(flat_m)
    for _, i in inactive[:k]:
        out[i] = True
    return torch.tensor(out).view(mask.shape)


@pytest.mark.parametrize("seed", range(5))
def test_drop_and_grow_match_a_direct_computation_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    # integer-valued scores in a small range: many exact ties
    weight = torch.randint(-3, 4, (6, 5), generator=g).float()
    grad = torch.randint(0, 3, (6, 5), generator=g).float()
    mask = torch.rand(6, 5, generator=g) < 0.5
    k = drop_count(int(mask.sum()), 0.4)
    dropped = drop_smallest(weight.abs(), mask, k)
    assert torch.equal(dropped, direct_drop(weight.abs(), mask, k))
    grown = grow_largest(grad, dropped, k)
    assert torch.equal(grown, direct_grow(grad, dropped, k))
    assert int(grown.sum()) == int(mask.sum())  # density unchanged


def test_active_positions_are_never_grow_candidates():
    """The active positions hold the largest gradients; growth still picks only inactive ones."""
    mask = torch.tensor([True, True, False, False, False, True])
    grad = torch.tensor([9.0, 8.0, 0.1, 0.3, 0.2, 7.0])
    grown = grow_largest(grad, mask, 2)
    assert grown.tolist() == [True, True, False, True, True, True]
    with pytest.raises(ValueError):
        grow_largest(grad, mask, 4)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        random = grow_random(mask, 2, g)
        assert torch.all(random[mask]) and int(random.sum()) == 5


def test_just_dropped_connections_may_be_regrown():
    """RigL grows among positions inactive *after* the drop."""
    mask = torch.tensor([True, True, False])
    weight = torch.tensor([0.01, 1.0, 0.0])
    grad = torch.tensor([5.0, 0.0, 1.0])
    dropped = drop_smallest(weight.abs(), mask, 1)
    assert dropped.tolist() == [False, True, False]
    assert grow_largest(grad, dropped, 1).tolist() == [True, True, False]


def test_drop_noise_is_seeded_and_breaks_ties_of_zero_weights():
    weight = torch.zeros(100)
    a = drop_scores(weight, 1e-5, torch.Generator().manual_seed(3))
    b = drop_scores(weight, 1e-5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.unique().numel() == 100
    mask = torch.ones(100, dtype=torch.bool)
    assert torch.equal(drop_smallest(a, mask, 10), direct_drop(a, mask, 10))
    assert drop_smallest(a, mask, 10).flatten()[:10].sum() < 10  # not simply the first ten indices


def test_sign_split_drop_matches_set():
    w = torch.tensor([0.5, -0.1, 0.2, -0.9, 0.05, -0.3, 0.7, -0.02, 0.0, 0.4])
    mask = torch.ones(10, dtype=torch.bool)
    mask[6] = False
    out, dropped = drop_sign_split(w, mask, 0.5)
    # active positives (incl. 0): 0.5, 0.2, 0.05, 0.0, 0.4 -> floor(2.5) = 2 smallest: 0.0 (8), 0.05 (4)
    # active negatives: -0.1, -0.9, -0.3, -0.02 -> 2 closest to zero: -0.02 (7), -0.1 (1)
    expected = mask.clone()
    expected[[8, 4, 7, 1]] = False
    assert dropped == 4 and torch.equal(out, expected)


def test_cosine_drop_fraction_by_hand():
    assert drop_fraction(0, 0.3, 1000) == pytest.approx(0.3)
    assert drop_fraction(500, 0.3, 1000) == pytest.approx(0.15)
    assert drop_fraction(250, 0.3, 1000) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert drop_fraction(1000, 0.3, 1000) == 0.0 and drop_fraction(1500, 0.3, 1000) == 0.0
    assert drop_fraction(400, 0.3, 1000, schedule="constant") == 0.3
    assert drop_fraction(500, 0.5, 1000, floor=0.005) == pytest.approx(0.005 + 0.495 / 2)


def test_rate_and_changes_by_hand():
    before = torch.tensor([[True, False], [False, False]])
    after = torch.tensor([[False, True], [False, False]])
    assert connections_changed(before, after) == 1
    assert in_time_rate({"a": before | after, "b": torch.tensor([True, False])}) == pytest.approx(3 / 6)
