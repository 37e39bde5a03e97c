"""Supermask criteria against NumPy computations, and the re-initialisations of the kept weights."""

import numpy as np
import pytest
import torch

from prunekit.errors import UserError
from prunekit.weights.supermask import mask_by_criterion, masked_init

NUMPY_SCORES = {
    "large_final": lambda wi, wf: np.abs(wf),
    "small_final": lambda wi, wf: -np.abs(wf),
    "large_init": lambda wi, wf: np.abs(wi),
    "small_init": lambda wi, wf: -np.abs(wi),
    "magnitude_increase": lambda wi, wf: np.abs(wf) - np.abs(wi),
    "movement": lambda wi, wf: np.abs(wf - wi),
}


def numpy_layer_mask(score, alive, rate):
    idx = np.flatnonzero(alive.ravel())
    k = int(round(rate * idx.size))
    new = alive.ravel().copy()
    new[idx[np.argsort(score.ravel()[idx], kind="stable")[:k]]] = False
    return new.reshape(alive.shape)


def weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    init = {"a.weight": torch.randn(8, 6, generator=g), "b.weight": torch.randn(5, 4, generator=g)}
    final = {k: v + 0.8 * torch.randn(v.shape, generator=g) for k, v in init.items()}
    masks = {k: torch.rand(v.shape, generator=g) < 0.8 for k, v in init.items()}
    return init, final, masks


@pytest.mark.parametrize("name", sorted(NUMPY_SCORES))
@pytest.mark.parametrize("sign", ["", "_same_sign", "_diff_sign"])
def test_criteria_match_numpy(name, sign):
    init, final, masks = weights()
    got = mask_by_criterion(name + sign, init, final, masks, rate=0.4)
    for n in init:
        wi, wf, alive = init[n].numpy(), final[n].numpy(), masks[n].numpy()
        score = NUMPY_SCORES[name](wi, wf).astype(np.float64)
        if sign:
            flipped = np.sign(wi) != np.sign(wf)
            demoted = flipped if sign == "_same_sign" else ~flipped
            score = np.where(demoted, score - 1e6, score)  # these go first
        np.testing.assert_array_equal(got[n].numpy(), numpy_layer_mask(score, alive, 0.4))


@pytest.mark.parametrize("name,sign", [("large_init_large_final", 1), ("small_init_small_final", -1)])
def test_quadrant_criteria(name, sign):
    """Every kept weight lies at least as deep in the common percentile quadrant as every pruned one."""
    init, final, masks = weights(1)
    got = mask_by_criterion(name, init, final, masks, rate=0.5)
    for n in init:
        alive = masks[n].numpy().ravel()
        idx = np.flatnonzero(alive)
        ri = np.empty(idx.size)
        rf = np.empty(idx.size)
        ri[np.argsort(sign * np.abs(init[n].numpy().ravel()[idx]), kind="stable")] = np.arange(idx.size)
        rf[np.argsort(sign * np.abs(final[n].numpy().ravel()[idx]), kind="stable")] = np.arange(idx.size)
        depth = np.minimum(ri, rf)
        kept = got[n].numpy().ravel()[idx]
        assert kept.sum() == idx.size - round(0.5 * idx.size)
        assert depth[kept].min() >= depth[~kept].max()
        assert not (got[n].numpy().ravel() & ~alive).any()


def test_random_criterion_keeps_counts_and_is_seeded():
    init, final, masks = weights(2)
    a = mask_by_criterion("random", init, final, masks, 0.3, seed=1)
    b = mask_by_criterion("random", init, final, masks, 0.3, seed=1)
    c = mask_by_criterion("random", init, final, masks, 0.3, seed=2)
    for n in init:
        assert torch.equal(a[n], b[n]) and int(a[n].sum()) == int(masks[n].sum()) - round(0.3 * int(masks[n].sum()))
    assert any(not torch.equal(a[n], c[n]) for n in init)
    with pytest.raises(UserError):
        mask_by_criterion("largest", init, final, masks, 0.3)


def test_reinitialisations():
    init, _, masks = weights(3)
    init["bias"] = torch.ones(3)
    for how in ("reinit", "reshuffle", "signed_reinit", "signed_constant"):
        out = masked_init(init, masks, how, seed=0)
        assert torch.equal(out["bias"], init["bias"])
        for n, mask in masks.items():
            wi, w = init[n].numpy(), out[n].numpy()
            m = mask.numpy()
            assert (w[~m] == 0).all()
            if how == "reshuffle":
                np.testing.assert_array_equal(np.sort(w[m]), np.sort(wi[m]))
            if how == "signed_reinit":
                assert (np.sign(w[m]) == np.sign(wi[m])).all()
                assert set(np.abs(w[m]).tolist()) <= set(np.abs(wi).ravel().tolist())
            if how == "signed_constant":
                np.testing.assert_allclose(w[m], np.sign(wi[m]) * wi.std(), rtol=1e-6)
            if how == "reinit":
                assert set(w[m].tolist()) <= set(wi.ravel().tolist())
    plain = masked_init(init, masks)
    for n, mask in masks.items():
        assert torch.equal(plain[n], init[n] * mask)
