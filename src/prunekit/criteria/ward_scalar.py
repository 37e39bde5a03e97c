"""Ward clustering of scalars (1x1 kernels) for many channels at once, with the same cut as SciPy.

REPrune Alg. 1 clusters, for every input channel, the kernels of the active filters and cuts every dendrogram
at one height. For a 1x1 conv a kernel is a scalar, and in one dimension Ward's method only ever merges
neighbouring clusters in sorted order: if cluster C lies between A and B (centroid gaps x and y), then
Delta(A, B) = h_AB (x + y)^2 with h_ab = n_a n_b / (n_a + n_b), and Delta(A, C) >= Delta(A, B) together with
Delta(C, B) >= Delta(A, B) would need 1 >= sqrt(h_AB / h_AC) + sqrt(h_AB / h_CB), which fails since
h_AB / h_AC > n_B / (n_A + n_B) and h_AB / h_CB > n_A / (n_A + n_B). So the agglomeration is a chain of
interval merges, and all channels can run it in lockstep with NumPy: every step, each channel merges its
closest neighbouring pair (the Ward height sqrt(2 h_ab) |mean_a - mean_b|, SciPy's scale).

SciPy gets its heights from the Lance-Williams recurrence, which rounds differently, so this module only
decides what is robust to round-off and hands the rest to SciPy: a channel goes to `exact_linkage` when two
merge candidates that share a cluster lie within `TOLERANCE` of each other (a tie whose order round-off could
swap; ties between disjoint pairs give the same merges in either order, and float32 weights have many), when
it may attain the cut height, or when one of its heights lies within `TOLERANCE` of the cut. The cut height
itself always comes from SciPy. The result is the partition and cut SciPy's per-channel linkage + fcluster
give (tests/criteria/test_ward_scalar.py compares them).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Relative gap below which two heights count as tied. Lance-Williams and centroid heights agree to about
# 1e-14 relative on CIFAR/ImageNet-sized layers (measured in the tests); this leaves five orders of margin.
TOLERANCE = 1e-9
# Rows processed together: a chunk's arrays stay in the core's cache.
CHUNK_ROWS = 256


class _Chains:
    """Interval clusters over each row's sorted values: a doubly linked list of cluster heads per row. Arrays
    are indexed flat (row * n + position); `next` and `prev` hold flat indices, -1 when there is none."""

    def __init__(self, values: np.ndarray) -> None:
        rows, n = values.shape
        self.shape = (rows, n)
        flat = np.arange(rows * n).reshape(rows, n)
        self.size = np.ones(rows * n)
        self.total = values.reshape(-1).copy()
        self.alive = np.ones(rows * n, dtype=bool)
        self.next = np.where(np.arange(n) < n - 1, flat + 1, -1).reshape(-1)
        self.prev = np.where(np.arange(n) > 0, flat - 1, -1).reshape(-1)
        gap = np.full((rows, n), np.inf)  # Ward height of (head i, its next head); inf when none
        gap[:, :-1] = np.abs(np.diff(values, axis=1))
        self.gap = gap.reshape(-1)

    def _height(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        size_a, size_b = self.size[a], self.size[b]
        mean_gap = np.abs(self.total[b] / size_b - self.total[a] / size_a)
        return np.sqrt(2.0 * size_a * size_b / (size_a + size_b)) * mean_gap

    def merge(self, head: np.ndarray) -> None:
        """Merge every cluster in `head` (flat indices, at most one per row) with its next cluster."""
        tail = self.next[head]
        self.size[head] += self.size[tail]
        self.total[head] += self.total[tail]
        self.alive[tail] = False
        self.gap[tail] = np.inf
        after = self.next[tail]
        self.next[head] = after
        has_after = after >= 0
        self.prev[after[has_after]] = head[has_after]
        self.gap[head] = np.inf
        self.gap[head[has_after]] = self._height(head[has_after], after[has_after])
        before = self.prev[head]
        has_before = before >= 0
        self.gap[before[has_before]] = self._height(before[has_before], head[has_before])

    def closest(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row in `rows`: the flat head of its closest pair, that pair's height, and whether a pair sharing a
        cluster with it lies within TOLERANCE (a tie whose order decides the partition). Disjoint ties do not
        matter: either order gives the same merges."""
        n = self.shape[1]
        gaps = self.gap.reshape(self.shape)
        if rows.size < self.shape[0]:
            gaps = gaps[rows]
        head = np.argmin(gaps, axis=1) + rows * n
        height = self.gap[head]
        limit = height * (1.0 + TOLERANCE)
        before, after = self.prev[head], self.next[self.next[head]]
        tied = (before >= 0) & (self.gap[before] <= limit)
        tied |= (after >= 0) & (self.gap[self.next[head]] <= limit)
        return head, height, tied

    def labels(self) -> np.ndarray:
        """Cluster ids 1..k per row, in sorted-value order."""
        return np.cumsum(self.alive.reshape(self.shape), axis=1)


def _first_merges(chains: _Chains, n_merge: int) -> tuple[np.ndarray, np.ndarray]:
    """Run `n_merge` merges in every row; return their heights (rows, n_merge) and which rows were ambiguous."""
    rows = np.arange(chains.shape[0])
    heights = np.empty((len(rows), n_merge))
    ambiguous = np.zeros(len(rows), dtype=bool)
    for step in range(n_merge):
        head, height, tied = chains.closest(rows)
        ambiguous |= tied
        heights[:, step] = height
        chains.merge(head)
    return heights, ambiguous


def _merge_up_to(chains: _Chains, cut: float) -> np.ndarray:
    """Apply every remaining merge at a height <= `cut`; return the rows with a height too close to `cut`."""
    ambiguous = np.zeros(chains.shape[0], dtype=bool)
    rows = np.arange(chains.shape[0])
    while rows.size:
        head, height, tied = chains.closest(rows)
        ambiguous[rows[np.abs(height - cut) <= cut * TOLERANCE]] = True
        go = (height <= cut) & ~ambiguous[rows]
        ambiguous[rows[go & tied]] = True
        go &= ~tied
        rows, head = rows[go], head[go]
        if rows.size:
            chains.merge(head)
    return ambiguous


def scalar_ward_cut(
    values: np.ndarray,
    n_merge: int,
    exact_linkage: Callable[[np.ndarray], np.ndarray],
    exact_cut: Callable[[np.ndarray, float], np.ndarray],
) -> tuple[float, np.ndarray]:
    """REPrune's cut over scalar kernels: h = max_j d_j, d_j channel j's n_merge-th Ward height (Eq. 4), and
    every channel's clusters after the merges at height <= h (Eq. 5).

    values: (channels, points) float64. exact_linkage(points (n, 1)) and exact_cut(z, h) are SciPy's linkage
    (ward) and fcluster (distance) for the channels this path cannot settle. Returns (h, labels) with labels
    (points, channels), ids 1..k within each channel (the partition SciPy gives; the ids may be numbered
    differently).
    """
    n_channels, n_points = values.shape
    if not 1 <= n_merge < n_points:
        raise ValueError(f"n_merge must be in [1, {n_points - 1}], got {n_merge}")
    order = np.argsort(values, axis=1, kind="stable")
    chunks = []
    for start in range(0, n_channels, CHUNK_ROWS):
        chains = _Chains(np.take_along_axis(values[start:start + CHUNK_ROWS], order[start:start + CHUNK_ROWS], 1))
        heights, ambiguous = _first_merges(chains, n_merge)
        chunks.append((chains, heights, ambiguous))
    heights = np.concatenate([c[1] for c in chunks])
    exact = np.concatenate([c[2] for c in chunks])
    dendrograms: dict[int, np.ndarray] = {}

    def settle(channels: np.ndarray) -> None:
        for j in channels.tolist():
            if j not in dendrograms:
                dendrograms[j] = exact_linkage(values[j][:, None])

    settle(np.flatnonzero(exact))
    nth = heights[:, -1].copy()
    for j, z in dendrograms.items():
        nth[j] = z[n_merge - 1, 2]
    near_max = ~exact & (nth >= nth.max() * (1.0 - TOLERANCE))
    exact |= near_max
    settle(np.flatnonzero(near_max))
    cut = max(float(dendrograms[j][n_merge - 1, 2]) for j in dendrograms)

    exact |= (np.abs(heights - cut) <= cut * TOLERANCE).any(axis=1)
    labels = np.empty((n_points, n_channels), dtype=np.int64)
    for index, (chains, _, _) in enumerate(chunks):
        rows = slice(index * CHUNK_ROWS, index * CHUNK_ROWS + chains.shape[0])
        exact[rows] |= _merge_up_to(chains, cut)
        sorted_labels = chains.labels()
        unsorted = np.empty_like(sorted_labels)
        np.put_along_axis(unsorted, order[rows], sorted_labels, axis=1)
        labels[:, rows] = unsorted.T
    settle(np.flatnonzero(exact))
    for j in np.flatnonzero(exact).tolist():
        labels[:, j] = exact_cut(dendrograms[j], cut)
    return cut, labels
