"""Greedy maximum cluster coverage (REPrune Alg. 1, Eq. 6-7).

The universe is every (input channel j, cluster c) pair. Filter i covers exactly one element per input
channel: the cluster that holds its kernel in channel j. The greedy solver repeatedly picks the filter that
covers the most not-yet-covered elements (REPrune Eq. 7), breaking ties uniformly at random with a seeded
generator, as REPrune does ("random sampling among equal-score candidates"). Greedy max coverage covers at
least (1 - 1/e) of the optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CoverageResult:
    """Outcome of `greedy_max_coverage`: rows in pick order and how much of the universe they cover."""

    order: list[int]
    covered: int
    total: int

    @property
    def coverage_rate(self) -> float:
        """Covered (channel, cluster) pairs / all pairs; 1.0 for an empty universe."""
        return self.covered / self.total if self.total else 1.0


def greedy_max_coverage(labels: np.ndarray, n_pick: int, rng: np.random.Generator) -> CoverageResult:
    """Pick `n_pick` rows of `labels` greedily maximising the number of covered (column, label) pairs.

    labels: integer array (n_items, n_channels); labels[i, j] is the cluster of item i's kernel in channel j
    (ids only need to be distinct within a column). Returns the picked row indices in the order they were
    picked. Each step picks uniformly at random among the rows with the largest marginal gain (Eq. 7); once
    everything is covered every remaining gain is 0, so the rest are random picks, as in the paper.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (items x channels), got shape {labels.shape}")
    n_items, n_channels = labels.shape
    if not 0 <= n_pick <= n_items:
        raise ValueError(f"n_pick must be in [0, {n_items}], got {n_pick}")

    # Renumber each column's labels to 0..m_j-1 and shift by a per-column offset, so one integer names one
    # universe element (channel j, cluster c).
    element = np.empty((n_items, n_channels), dtype=np.int64)
    total = 0
    for j in range(n_channels):
        _, inverse = np.unique(labels[:, j], return_inverse=True)
        element[:, j] = inverse.reshape(-1) + total
        total += int(inverse.max()) + 1 if n_items else 0

    covered = np.zeros(total, dtype=bool)
    # Marginal gain of every row; starts at n_channels (each row covers one fresh element per channel).
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
            # Every row sharing a freshly covered element loses one unit of gain per shared element.
            gain -= (element[:, fresh_channels] == fresh).sum(axis=1)
    return CoverageResult(order=order, covered=n_covered, total=total)
