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

    element, total = _universe_elements(labels)
    members, member_start = _element_members(element, total)

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
        fresh = element[pick][~covered[element[pick]]]
        if fresh.size:
            covered[fresh] = True
            n_covered += fresh.size
            # Every row sharing a freshly covered element loses one unit of gain per shared element: gather
            # the member rows of the fresh elements (CSR ranges) and count them.
            gain -= np.bincount(members[_ranges(member_start[fresh], member_start[fresh + 1])], minlength=n_items)
    return CoverageResult(order=order, covered=n_covered, total=total)


def _universe_elements(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Renumber each column's labels to 0..m_j-1 (by sorted value, as np.unique) and shift by a per-column
    offset, so one integer names one universe element (channel j, cluster c). Returns (element, total)."""
    n_items, n_channels = labels.shape
    if n_items == 0 or n_channels == 0:
        return np.zeros((n_items, n_channels), dtype=np.int64), 0
    order = np.argsort(labels, axis=0, kind="stable")
    ranked = np.take_along_axis(labels, order, axis=0)
    rank = np.zeros((n_items, n_channels), dtype=np.int64)
    np.cumsum(ranked[1:] != ranked[:-1], axis=0, out=rank[1:])
    sizes = rank[-1] + 1
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    element = np.empty((n_items, n_channels), dtype=np.int64)
    np.put_along_axis(element, order, rank + offsets, axis=0)
    return element, int(sizes.sum())


def _element_members(element: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR index of the rows holding each element: rows members[start[e]:start[e + 1]] contain element e."""
    flat = element.reshape(-1)
    members = np.argsort(flat, kind="stable") // max(element.shape[1], 1)
    start = np.zeros(total + 1, dtype=np.int64)
    np.cumsum(np.bincount(flat, minlength=total), out=start[1:])
    return members, start


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenation of arange(a, b) for every (a, b) in zip(starts, stops), without a Python loop."""
    lengths = stops - starts
    shift = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(int(lengths.sum())) + shift
