"""Greedy max cluster coverage against brute force and an independent step-by-step greedy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from prunekit.criteria.coverage import greedy_max_coverage


def _elements(labels: np.ndarray, row: int) -> set[tuple[int, int]]:
    return {(j, int(labels[row, j])) for j in range(labels.shape[1])}


def _covered(labels: np.ndarray, rows) -> int:
    return len(set().union(*(_elements(labels, r) for r in rows))) if len(rows) else 0


def _universe(labels: np.ndarray) -> int:
    return sum(len(set(labels[:, j].tolist())) for j in range(labels.shape[1]))


def _random_instance(rng: np.random.Generator) -> np.ndarray:
    n_items = int(rng.integers(4, 9))
    n_channels = int(rng.integers(2, 6))
    return rng.integers(0, int(rng.integers(2, 5)), size=(n_items, n_channels))


def test_greedy_within_one_minus_one_over_e_of_brute_force_optimum():
    rng = np.random.default_rng(0)
    for trial in range(40):
        labels = _random_instance(rng)
        for n_pick in range(1, min(4, labels.shape[0]) + 1):
            result = greedy_max_coverage(labels, n_pick, np.random.default_rng(trial))
            optimum = max(
                _covered(labels, subset) for subset in itertools.combinations(range(len(labels)), n_pick)
            )
            assert len(set(result.order)) == n_pick
            assert result.covered == _covered(labels, result.order)
            assert result.covered <= optimum
            assert result.covered >= (1 - 1 / math.e) * optimum


def test_every_pick_has_the_largest_marginal_gain():
    rng = np.random.default_rng(1)
    for trial in range(40):
        labels = _random_instance(rng)
        n_pick = int(rng.integers(1, labels.shape[0] + 1))
        result = greedy_max_coverage(labels, n_pick, np.random.default_rng(trial))
        covered: set[tuple[int, int]] = set()
        remaining = set(range(labels.shape[0]))
        for pick in result.order:
            gains = {r: len(_elements(labels, r) - covered) for r in remaining}
            assert gains[pick] == max(gains.values())
            covered |= _elements(labels, pick)
            remaining.remove(pick)
        assert result.covered == len(covered)
        assert result.total == _universe(labels)
        assert result.coverage_rate == pytest.approx(len(covered) / _universe(labels))


def test_labels_only_need_to_be_distinct_within_a_column():
    labels = np.array([[5, 5], [5, 7], [9, 7]])
    result = greedy_max_coverage(labels, 3, np.random.default_rng(0))
    assert result.total == 4 and result.covered == 4


def test_same_seed_same_order_and_different_seeds_break_ties_differently():
    labels = np.zeros((10, 3), dtype=int)  # every gain ties at every step
    orders = {tuple(greedy_max_coverage(labels, 5, np.random.default_rng(seed)).order) for seed in range(10)}
    assert len(orders) > 1
    first = greedy_max_coverage(labels, 5, np.random.default_rng(42)).order
    assert greedy_max_coverage(labels, 5, np.random.default_rng(42)).order == first
    first_picks = {
        greedy_max_coverage(labels, 1, np.random.default_rng(seed)).order[0] for seed in range(200)
    }
    assert first_picks == set(range(10))


def test_zero_picks_and_invalid_count():
    labels = np.array([[0, 1], [1, 1]])
    result = greedy_max_coverage(labels, 0, np.random.default_rng(0))
    assert result.order == [] and result.covered == 0 and result.coverage_rate == 0.0
    with pytest.raises(ValueError):
        greedy_max_coverage(labels, 3, np.random.default_rng(0))
