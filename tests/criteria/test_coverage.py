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


def _greedy_before_csr(labels: np.ndarray, n_pick: int, rng: np.random.Generator) -> tuple[list[int], int, int]:
    """The solver as it was before the CSR gain update (commit dd421e9), kept verbatim as the reference."""
    n_items, n_channels = labels.shape
    element = np.empty((n_items, n_channels), dtype=np.int64)
    total = 0
    for j in range(n_channels):
        _, inverse = np.unique(labels[:, j], return_inverse=True)
        element[:, j] = inverse.reshape(-1) + total
        total += int(inverse.max()) + 1 if n_items else 0
    covered = np.zeros(total, dtype=bool)
    gain = np.full(n_items, n_channels, dtype=np.int64)
    available = np.ones(n_items, dtype=bool)
    order: list[int] = []
    n_covered = 0
    for _ in range(n_pick):
        best = gain[available].max()
        candidates = np.flatnonzero(available & (gain == best))
        pick = int(candidates[rng.integers(len(candidates))])
        order.append(pick)
        available[pick] = False
        fresh_channels = np.flatnonzero(~covered[element[pick]])
        if fresh_channels.size:
            fresh = element[pick, fresh_channels]
            covered[fresh] = True
            n_covered += fresh.size
            gain -= (element[:, fresh_channels] == fresh).sum(axis=1)
    return order, n_covered, total


@pytest.mark.parametrize("n_labels", [1, 2, 3, 6, 40])
def test_same_picks_and_rng_state_as_the_previous_solver_on_random_labels(n_labels):
    # Few distinct labels make many equal gains, so the seeded tie-breaking is exercised at most steps.
    data = np.random.default_rng(n_labels)
    for trial in range(6):
        n_items, n_channels = int(data.integers(1, 30)), int(data.integers(1, 25))
        labels = data.integers(0, n_labels, size=(n_items, n_channels)) * 7 - 3
        n_pick = int(data.integers(0, n_items + 1))
        rng_new, rng_old = np.random.default_rng(trial), np.random.default_rng(trial)
        result = greedy_max_coverage(labels, n_pick, rng_new)
        assert (result.order, result.covered, result.total) == _greedy_before_csr(labels, n_pick, rng_old)
        assert rng_new.integers(1 << 30) == rng_old.integers(1 << 30)  # same number of draws


def test_no_channels_or_no_items():
    assert greedy_max_coverage(np.zeros((4, 0), dtype=int), 2, np.random.default_rng(0)).total == 0
    assert greedy_max_coverage(np.zeros((0, 3), dtype=int), 0, np.random.default_rng(0)).order == []
