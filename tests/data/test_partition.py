"""Client partitions: the Dirichlet split against a direct per-class computation, seeds, no sample lost or
duplicated, the same proportions on the test split, min_samples redraws, empty clients dropped."""

import numpy as np
import pytest

from prunekit.data.partition import partition
from prunekit.errors import UserError


def labels(per_class, classes=10, seed=1):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(classes), per_class))


def test_dirichlet_per_class_shares_match_a_direct_computation():
    train, test = labels(60), labels(20, seed=2)
    part = partition(train, test, 5, "dirichlet", beta=0.5, seed=7)
    # the same draw, by hand: one Dir(0.5 * 1_5) row per class from default_rng(7)
    p = np.random.default_rng(7).dirichlet([0.5] * 5, size=10)
    np.testing.assert_allclose(part.proportions, p)
    for split, y, n_c in ((part.train, train, 60), (part.test, test, 20)):
        for c in range(10):
            bounds = [0] + [int(np.floor(n_c * p[c, : k + 1].sum())) for k in range(4)] + [n_c]
            for i, k in enumerate(part.clients):
                got = int((y[split[i]] == c).sum())
                assert got == bounds[k + 1] - bounds[k], (c, k)


def test_no_sample_lost_or_duplicated_and_seed_determinism():
    train, test = labels(50), labels(10)
    for scheme in ("iid", "dirichlet"):
        a = partition(train, test, 6, scheme, beta=0.1, seed=3)
        b = partition(train, test, 6, scheme, beta=0.1, seed=3)
        c = partition(train, test, 6, scheme, beta=0.1, seed=4)
        for x, y in zip(a.train + a.test, b.train + b.test, strict=True):
            np.testing.assert_array_equal(x, y)
        assert any(not np.array_equal(x, y) for x, y in zip(a.train, c.train, strict=False))
        if not a.dropped:  # every index exactly once
            np.testing.assert_array_equal(np.sort(np.concatenate(a.train)), np.arange(len(train)))
            np.testing.assert_array_equal(np.sort(np.concatenate(a.test)), np.arange(len(test)))


def test_iid_sizes_are_nearly_equal():
    part = partition(labels(10), labels(3), 4, "iid", seed=0)
    assert sorted(part.sizes()) == [25, 25, 25, 25]
    assert sorted(len(t) for t in part.test) == [7, 7, 8, 8]


def test_min_samples_redraws_and_empty_clients_are_dropped():
    train, test = labels(30), labels(5)
    loose = partition(train, test, 20, "dirichlet", beta=0.05, seed=0)
    assert loose.dropped and len(loose) + len(loose.dropped) == 20
    assert all(len(t) > 0 for t in loose.train) and all(len(t) > 0 for t in loose.test)
    strict = partition(train, test, 4, "dirichlet", beta=0.5, seed=0, min_samples=40)
    assert min(strict.sizes()) >= 40
    with pytest.raises(UserError, match="attempts"):
        partition(train, test, 20, "dirichlet", beta=0.05, seed=0, min_samples=100)


def test_bad_input_is_a_user_error():
    with pytest.raises(UserError, match="scheme"):
        partition(labels(2), labels(1), 2, "pathological")
    with pytest.raises(UserError, match="beta"):
        partition(labels(2), labels(1), 2, "dirichlet", beta=0)
