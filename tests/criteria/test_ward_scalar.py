"""The lockstep scalar Ward cut against SciPy's per-channel linkage + fcluster (public functions)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage

from prunekit.criteria.ward_scalar import scalar_ward_cut


def _scipy_cut(values: np.ndarray, n_merge: int) -> tuple[float, np.ndarray]:
    dendrograms = [linkage(row[:, None], method="ward") for row in values]
    height = max(float(z[n_merge - 1, 2]) for z in dendrograms)
    return height, np.stack([fcluster(z, height, criterion="distance") for z in dendrograms], axis=1)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to the numbering of each column's clusters."""
    for column_a, column_b in zip(a.T, b.T, strict=True):
        pairs = set(zip(column_a.tolist(), column_b.tolist(), strict=True))
        if not len(pairs) == len(set(column_a.tolist())) == len(set(column_b.tolist())):
            return False
    return True


class _CountingLinkage:
    """SciPy's linkage, counting the channels the fast path handed over."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, points: np.ndarray) -> np.ndarray:
        self.calls += 1
        return linkage(points, method="ward")


def _fast(values: np.ndarray, n_merge: int) -> tuple[float, np.ndarray, int]:
    exact = _CountingLinkage()
    height, labels = scalar_ward_cut(values, n_merge, exact, lambda z, h: fcluster(z, h, criterion="distance"))
    return height, labels, exact.calls


def _values(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    if kind == "normal":
        return rng.normal(size=shape) * 0.05
    if kind == "float32":  # real weights: disjoint exact ties between gaps are common
        return (rng.normal(size=shape) * 0.02).astype(np.float32).astype(np.float64)
    if kind == "quantised":  # ties between pairs that share a cluster
        return rng.integers(0, 5, size=shape) / 4.0
    return np.tile(np.arange(shape[1], dtype=np.float64), (shape[0], 1))  # equally spaced: every gap ties


@pytest.mark.parametrize("kind", ["normal", "float32", "quantised", "spaced"])
@pytest.mark.parametrize(("shape", "n_merge"), [((6, 2), 1), ((7, 12), 5), ((40, 64), 32), ((300, 33), 32),
                                                ((9, 128), 1), ((5, 100), 99)])
def test_cut_and_partition_equal_scipy(kind, shape, n_merge):
    rng = np.random.default_rng(shape[0] * shape[1] + n_merge)
    values = _values(kind, shape, rng)
    height, labels = _scipy_cut(values, n_merge)
    fast_height, fast_labels, _ = _fast(values, n_merge)
    assert fast_height == height
    assert _same_partition(fast_labels, labels)
    assert np.array_equal(fast_labels.max(axis=0), labels.max(axis=0))
    assert fast_labels.min() == 1


def test_continuous_values_are_settled_without_scipy_for_almost_every_channel():
    # Otherwise the equality above would hold only because everything fell back to SciPy.
    values = _values("float32", (512, 256), np.random.default_rng(0))
    height, labels = _scipy_cut(values, 128)
    fast_height, fast_labels, handed_over = _fast(values, 128)
    assert fast_height == height and _same_partition(fast_labels, labels)
    assert 1 <= handed_over <= 10  # the channel defining the cut always goes to SciPy


def test_equally_spaced_values_go_to_scipy():
    values = _values("spaced", (4, 16), np.random.default_rng(0))
    assert _fast(values, 3)[2] == 4


def test_n_merge_out_of_range():
    values = np.zeros((2, 5))
    for n_merge in (0, 5):
        with pytest.raises(ValueError, match="n_merge"):
            _fast(values, n_merge)
