"""CHEX pieces against NumPy SVD / explicit projections, hand values, and sampling statistics."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from prunekit.criteria.chex import (
    chex_leverage_scores,
    chex_leverage_select,
    l1_filter_select,
    regrowth_delta,
    regrowth_scores,
    sample_regrowth,
)

# ---------------------------------------------------------------- leverage scores


def _numpy_leverage(weight: np.ndarray, rank: int) -> np.ndarray:
    x = weight.reshape(weight.shape[0], -1).T  # (in*kh*kw) x out, filters as columns
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return (vt[:rank].T ** 2).sum(axis=1)


def test_leverage_scores_match_numpy_svd():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(8, 4, 3, 3))
    for rank in (0, 1, 3, 8):
        scores = chex_leverage_scores(torch.tensor(weight), rank).numpy()
        np.testing.assert_allclose(scores, _numpy_leverage(weight, rank), atol=1e-10)
        assert scores.sum() == pytest.approx(rank)  # leverage scores of k orthonormal vectors sum to k


def test_leverage_select_is_top_k_of_the_scores():
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(10, 3, 3, 3))  # d = 27 >= 10 filters
    for n_keep in (1, 4, 7, 10):
        expected = np.argsort(-_numpy_leverage(weight, n_keep), kind="stable")[:n_keep]
        assert chex_leverage_select(torch.tensor(weight), n_keep) == sorted(expected.tolist())
    expected_rank2 = np.argsort(-_numpy_leverage(weight, 2), kind="stable")[:5]
    assert chex_leverage_select(torch.tensor(weight), 5, rank=2) == sorted(expected_rank2.tolist())


def test_leverage_select_falls_back_to_l1_when_filters_outnumber_their_dimension():
    rng = np.random.default_rng(2)
    weight = rng.normal(size=(16, 4, 1, 1))  # d = 4 < 16 filters
    l1 = np.abs(weight).reshape(16, -1).sum(axis=1)
    assert chex_leverage_select(torch.tensor(weight), 6) == sorted(np.argsort(-l1)[:6].tolist())


def test_l1_filter_select_hand_made_with_ties_and_active():
    weight = torch.zeros(5, 2, 1, 1)
    weight[:, 0, 0, 0] = torch.tensor([1.0, -3.0, 2.0, 3.0, 0.5])  # L1: 1, 3, 2, 3, 0.5
    assert l1_filter_select(weight, 2) == [1, 3]
    assert l1_filter_select(weight, 3) == [1, 2, 3]
    weight[3, 0, 0, 0] = 2.0  # now filters 2 and 3 tie at 2: the lower index wins
    assert l1_filter_select(weight, 2) == [1, 2]
    assert l1_filter_select(weight, 2, active=[0, 3, 4]) == [0, 3]
    with pytest.raises(ValueError):
        l1_filter_select(weight, 6)


# ---------------------------------------------------------------- regrowth


def test_regrowth_delta_schedule():
    assert regrowth_delta(0, 100, 0.3) == pytest.approx(0.3)
    assert regrowth_delta(50, 100, 0.3) == pytest.approx(0.15)
    assert regrowth_delta(100, 100, 0.3) == 0.0
    assert regrowth_delta(150, 100, 0.3) == 0.0  # no regrowth after T_prune
    assert regrowth_delta(25, 100, 0.3) == pytest.approx(0.3 * (1 + math.sqrt(0.5)) / 2)
    values = [regrowth_delta(t, 100, 0.3) for t in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def _numpy_residuals(weight: np.ndarray, kept: list[int], candidates: list[int]) -> np.ndarray:
    x = weight.reshape(weight.shape[0], -1).T
    basis = x[:, kept]
    projector = basis @ np.linalg.pinv(basis)
    return np.linalg.norm((np.eye(x.shape[0]) - projector) @ x[:, candidates], axis=0)


def test_regrowth_scores_match_an_explicit_projection():
    rng = np.random.default_rng(3)
    weight = rng.normal(size=(10, 2, 3, 3))
    kept, candidates = [0, 3, 4, 8], [1, 2, 5, 6, 7, 9]
    scores = regrowth_scores(torch.tensor(weight, dtype=torch.float32), kept, candidates).numpy()
    np.testing.assert_allclose(
        scores, _numpy_residuals(weight.astype(np.float32), kept, candidates), rtol=1e-5
    )


def test_regrowth_scores_with_dependent_kept_filters_and_candidates_in_the_span():
    rng = np.random.default_rng(4)
    weight = rng.normal(size=(6, 1, 2, 2))  # d = 4
    weight[1] = 2.0 * weight[0]  # kept filters 0 and 1 are linearly dependent
    weight[3] = weight[0] - 0.5 * weight[2]  # candidate 3 lies in the span of the kept filters
    kept, candidates = [0, 1, 2], [3, 4, 5]
    scores = regrowth_scores(torch.tensor(weight), kept, candidates).numpy()
    np.testing.assert_allclose(scores, _numpy_residuals(weight, kept, candidates), atol=1e-10)
    assert scores[0] == pytest.approx(0.0, abs=1e-10)
    no_kept = regrowth_scores(torch.tensor(weight), [], candidates).numpy()
    np.testing.assert_allclose(no_kept, np.linalg.norm(weight[candidates].reshape(3, -1), axis=1))


def _softmax(values: np.ndarray) -> np.ndarray:
    e = np.exp(values - values.max())
    return e / e.sum()


def test_sample_regrowth_first_draw_follows_softmax():
    scores = torch.tensor([0.0, 1.0, 2.0, 0.5])
    p = _softmax(scores.numpy().astype(np.float64))
    generator = torch.Generator().manual_seed(0)
    draws = 4000
    counts = Counter(sample_regrowth(scores, 1, generator)[0] for _ in range(draws))
    for i in range(4):
        assert abs(counts[i] / draws - p[i]) < 0.03  # binomial std <= 0.008 here


def test_sample_regrowth_pairs_follow_successive_sampling():
    scores = torch.tensor([0.0, 1.0, 2.0])
    p = _softmax(scores.numpy().astype(np.float64))
    generator = torch.Generator().manual_seed(1)
    draws = 4000
    pairs = Counter(tuple(sample_regrowth(scores, 2, generator)) for _ in range(draws))
    for (a, b), count in pairs.items():
        assert a != b
        expected = p[a] * p[b] / (1 - p[a])  # P(first = a) P(second = b | a removed)
        assert abs(count / draws - expected) < 0.03


def test_sample_regrowth_without_replacement_and_determinism():
    scores = torch.randn(12)
    for count in range(13):
        positions = sample_regrowth(scores, count, torch.Generator().manual_seed(count))
        assert len(positions) == count and len(set(positions)) == count
        assert all(0 <= i < 12 for i in positions)
    assert sample_regrowth(scores, 5, torch.Generator().manual_seed(9)) == sample_regrowth(
        scores, 5, torch.Generator().manual_seed(9)
    )
    with pytest.raises(ValueError):
        sample_regrowth(scores, 13, torch.Generator())


def test_sample_regrowth_large_scores_and_temperature():
    scores = torch.tensor([1000.0, 0.0, 0.0, 0.0])
    generator = torch.Generator().manual_seed(2)
    # softmax underflows for the small entries, yet all four positions can still be drawn, the big one first
    for _ in range(20):
        positions = sample_regrowth(scores, 4, generator)
        assert positions[0] == 0 and sorted(positions) == [0, 1, 2, 3]
    hot = Counter(sample_regrowth(scores, 1, generator, temperature=1e6)[0] for _ in range(2000))
    assert all(hot[i] > 350 for i in range(4))  # temperature 1e6 makes it nearly uniform (500 each)
