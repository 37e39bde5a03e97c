"""Server aggregation against a direct NumPy computation: masked sample-weighted average, union, min_votes,
re-prune, dtypes kept."""

import numpy as np

from prunekit.federated.aggregate import MASK_PREFIX, ClientUpdate, aggregate, masked_average, reprune


def clients(seed=0, k=3, shape=(4, 5)):
    rng = np.random.default_rng(seed)
    ups = []
    for i in range(k):
        ups.append(ClientUpdate({
            "w": rng.normal(size=shape).astype(np.float32), MASK_PREFIX + "w": rng.random(shape) < 0.5,
            "b": rng.normal(size=shape[0]).astype(np.float16),
            "bn.num_batches_tracked": np.array(10 * (i + 1), dtype=np.int64),
            "flag": np.array([True, False, i == 0])}, num_examples=[10, 30, 60][i]))
    return ups


def test_masked_average_and_union_by_brute_force():
    ups = clients()
    w, m = masked_average(ups)
    for idx in np.ndindex(4, 5):
        holders = [(u.num_examples, u.arrays["w"][idx]) for u in ups if u.arrays[MASK_PREFIX + "w"][idx]]
        assert m["w"][idx] == bool(holders)
        want = sum(n * v for n, v in holders) / sum(n for n, _ in holders) if holders else 0.0
        assert np.isclose(w["w"][idx], want, rtol=1e-6)
    n = np.array([10, 30, 60]) / 100
    want_b = sum(s * u.arrays["b"].astype(np.float64) for s, u in zip(n, ups, strict=True))
    np.testing.assert_allclose(w["b"], want_b.astype(np.float16))
    assert w["bn.num_batches_tracked"] == round(0.1 * 10 + 0.3 * 20 + 0.6 * 30)


def test_min_votes_keeps_coordinates_held_by_enough_clients():
    ups = clients(seed=1)
    votes = sum(u.arrays[MASK_PREFIX + "w"].astype(int) for u in ups)
    for k in (0, 1, 2, 3):
        _, m = masked_average(ups, min_votes=k)
        np.testing.assert_array_equal(m["w"], votes >= max(1, k))


def test_reprune_keeps_the_largest_magnitudes_per_tensor():
    rng = np.random.default_rng(2)
    w = {"a": rng.normal(size=(6, 6)).astype(np.float32), "c": rng.normal(size=10).astype(np.float32)}
    m = {"a": rng.random((6, 6)) < 0.8, "c": np.array([True] * 3 + [False] * 7)}
    nw, nm = reprune(w, m, density=0.5)
    active = np.flatnonzero(m["a"].ravel())
    top = active[np.argsort(-np.abs(w["a"].ravel()[active]))[:18]]
    np.testing.assert_array_equal(np.flatnonzero(nm["a"].ravel()), np.sort(top))
    np.testing.assert_array_equal(nw["a"], np.where(nm["a"], w["a"], 0))
    np.testing.assert_array_equal(nm["c"], m["c"])  # 3 active < 5 kept: unchanged


def test_aggregate_keeps_dtypes_and_density():
    out = aggregate(clients(seed=3), density=0.25)
    assert out["w"].dtype == np.float32 and out["b"].dtype == np.float16
    assert out[MASK_PREFIX + "w"].dtype == np.bool_ and out["flag"].dtype == np.bool_
    assert out["bn.num_batches_tracked"].dtype == np.int64
    assert out[MASK_PREFIX + "w"].sum() == 5
    assert np.all(out["w"][~out[MASK_PREFIX + "w"]] == 0)
    np.testing.assert_array_equal(out["flag"], [True, False, False])  # shares 0.1 / 0.3 / 0.6: majority by weight
