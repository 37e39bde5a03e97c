"""Magnitude pruning of the remaining weights against a direct NumPy computation."""

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.errors import UserError
from prunekit.weights.magnitude import magnitude_masks, prunable_weights, random_masks_like


def numpy_prune(weights, masks, rate, names_together):
    """Prune round(rate * remaining) of the smallest |w| among the remaining weights of `names_together`, ties by
    position in the concatenation (NumPy's stable argsort)."""
    flat = np.concatenate([np.abs(weights[n]).ravel() for n in names_together])
    alive = np.concatenate([masks[n].ravel() for n in names_together])
    idx = np.flatnonzero(alive)
    k = int(round(rate * idx.size))
    new = alive.copy()
    new[idx[np.argsort(flat[idx], kind="stable")[:k]]] = False
    out, off = {}, 0
    for n in names_together:
        out[n] = new[off: off + weights[n].size].reshape(weights[n].shape)
        off += weights[n].size
    return out


def make(seed=0):
    g = torch.Generator().manual_seed(seed)
    weights = {"a.weight": torch.randn(6, 5, generator=g), "b.weight": torch.randn(4, 3, 3, 3, generator=g) * 0.3,
               "c.weight": torch.randn(10, 4, generator=g) * 2}
    masks = {n: torch.rand(w.shape, generator=g) < 0.7 for n, w in weights.items()}
    return weights, masks


def as_np(d):
    return {k: v.numpy() for k, v in d.items()}


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.9])
def test_global_matches_numpy(rate):
    weights, masks = make()
    got = magnitude_masks(weights, masks, rate, scope="global")
    want = numpy_prune(as_np(weights), as_np(masks), rate, list(weights))
    for n in weights:
        np.testing.assert_array_equal(got[n].numpy(), want[n])
    alive = sum(int(m.sum()) for m in masks.values())
    assert sum(int(m.sum()) for m in got.values()) == alive - round(rate * alive)


def test_layerwise_and_own_rates_match_numpy():
    weights, masks = make(1)
    got = magnitude_masks(weights, masks, 0.3, scope="layer", layer_rates={"c": 0.15})
    for n in ("a.weight", "b.weight"):
        np.testing.assert_array_equal(got[n].numpy(), numpy_prune(as_np(weights), as_np(masks), 0.3, [n])[n])
    want_c = numpy_prune(as_np(weights), as_np(masks), 0.15, ["c.weight"])["c.weight"]
    np.testing.assert_array_equal(got["c.weight"].numpy(), want_c)
    # global with an own-rate tensor: the others pooled
    got = magnitude_masks(weights, masks, 0.3, scope="global", layer_rates={"c.weight": 0.15})
    pooled = numpy_prune(as_np(weights), as_np(masks), 0.3, ["a.weight", "b.weight"])
    for n in pooled:
        np.testing.assert_array_equal(got[n].numpy(), pooled[n])
    np.testing.assert_array_equal(got["c.weight"].numpy(), want_c)


def test_pruned_stay_pruned_and_kept_are_larger():
    weights, masks = make(2)
    got = magnitude_masks(weights, masks, 0.4)
    for n in weights:
        assert not bool((got[n] & ~masks[n]).any())  # never regrown
    kept = torch.cat([weights[n].abs()[got[n]] for n in weights])
    removed = torch.cat([weights[n].abs()[masks[n] & ~got[n]] for n in weights])
    assert kept.min() >= removed.max()


def test_prunable_weights_and_exclusions():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    assert list(prunable_weights(model)) == ["0.weight", "3.weight"]
    assert list(prunable_weights(model, exclude=["3"])) == ["0.weight"]
    assert list(prunable_weights(model, exclude=["*.weight"])) == []


def test_bad_rate():
    weights, masks = make()
    with pytest.raises(UserError):
        magnitude_masks(weights, masks, 1.0)
    with pytest.raises(UserError):
        magnitude_masks(weights, masks, 0.2, scope="local")


def test_random_masks_keep_counts():
    _, masks = make(3)
    rand = random_masks_like(masks, torch.Generator().manual_seed(0))
    for n in masks:
        assert int(rand[n].sum()) == int(masks[n].sum()) and rand[n].shape == masks[n].shape
    assert any(not torch.equal(rand[n], masks[n]) for n in masks)
