import numpy as np
import pytest
import torch
from torch import nn

from prunekit.criteria.slimming import bn_l1_penalty, bn_l1_subgradient_, slimming_keep, slimming_threshold


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 5, 3),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(45, 2),
    )
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, -0.2, 0.0, 1.5]))
        model[4].weight.copy_(torch.tensor([-0.3, 0.1, 0.0, 2.0, -0.7]))
    return model


def _grads_after_backward(model: nn.Sequential) -> list[torch.Tensor]:
    model.zero_grad()
    model(torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(1))).square().sum().backward()
    return [model[i].weight.grad.clone() for i in (1, 4)]


def test_subgradient_adds_s_times_sign_gamma():
    model = _net()
    plain = _grads_after_backward(model)
    _grads_after_backward(model)
    bn_l1_subgradient_(model, s=1e-2)
    for i, before in zip((1, 4), plain, strict=True):
        sign = np.sign(model[i].weight.detach().numpy())  # sign(0) = 0: the subgradient chosen at 0
        np.testing.assert_allclose(model[i].weight.grad.numpy(), before.numpy() + 1e-2 * sign, rtol=1e-6)


def test_subgradient_equals_autograd_of_the_l1_penalty():
    model = _net()
    _grads_after_backward(model)
    bn_l1_subgradient_(model, s=3e-3)
    by_hook = [model[i].weight.grad.clone() for i in (1, 4)]
    model.zero_grad()
    x = torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(1))
    (model(x).square().sum() + 3e-3 * bn_l1_penalty(model)).backward()
    for i, expected in zip((1, 4), by_hook, strict=True):
        assert torch.allclose(model[i].weight.grad, expected, atol=1e-7)


def test_subgradient_only_touches_named_layers_and_rejects_non_bn_names():
    model = _net()
    plain = _grads_after_backward(model)
    _grads_after_backward(model)
    bn_l1_subgradient_(model, s=1.0, modules=["4"])
    assert torch.equal(model[1].weight.grad, plain[0])
    assert not torch.equal(model[4].weight.grad, plain[1])
    with pytest.raises(ValueError, match="Conv2d"):
        bn_l1_subgradient_(model, s=1.0, modules=["0"])
    with pytest.raises(ValueError, match="no module"):
        bn_l1_subgradient_(model, s=1.0, modules=["bn9"])


def test_subgradient_fills_a_missing_gradient():
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -1.0, 0.0]))
    bn_l1_subgradient_(nn.Sequential(bn), s=0.5)
    assert bn.weight.grad.tolist() == [0.5, -0.5, 0.0]


def _random_gammas(seed: int, sizes: tuple[int, ...], levels: int | None = None) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    if levels is None:
        return [torch.from_numpy(rng.normal(size=n)) for n in sizes]
    return [torch.from_numpy(rng.integers(-levels, levels + 1, size=n) / levels) for n in sizes]


@pytest.mark.parametrize("percentile", [0.0, 0.1, 0.3, 0.5, 0.7, 0.95])
def test_threshold_and_keep_prune_exactly_the_chosen_fraction(percentile):
    gammas = _random_gammas(2, (16, 32, 24, 8))
    everything = np.abs(np.concatenate([g.numpy() for g in gammas]))
    n_prune = int(np.floor(percentile * everything.size + 1e-9))
    assert slimming_threshold(gammas, percentile) == np.sort(everything)[n_prune]
    keep = slimming_keep(gammas, percentile, min_channels=0)
    assert sum(len(g) - len(k) for g, k in zip(gammas, keep, strict=True)) == n_prune
    # Without ties the pruned set is exactly the n_prune smallest |gamma|: everything below the threshold.
    threshold = slimming_threshold(gammas, percentile)
    for g, kept in zip(gammas, keep, strict=True):
        assert kept == [i for i in range(len(g)) if abs(float(g[i])) >= threshold]


def test_threshold_lies_between_numpy_percentiles_of_neighbouring_ranks():
    gammas = _random_gammas(3, (40, 60))
    everything = np.abs(np.concatenate([g.numpy() for g in gammas]))
    threshold = slimming_threshold(gammas, 0.25)  # 25 of 100 pruned: the 26th smallest survives
    assert np.percentile(everything, 25, method="lower") < threshold
    assert threshold == np.percentile(everything, 100 * 25 / 99, method="nearest")


def test_ties_at_the_cut_are_pruned_in_layer_then_index_order():
    gammas = _random_gammas(4, (10, 14, 6), levels=3)  # only 7 distinct |gamma| values: many ties
    everything = np.abs(np.concatenate([g.numpy() for g in gammas]))
    for percentile in (0.2, 0.45, 0.6):
        n_prune = int(np.floor(percentile * everything.size + 1e-9))
        # Independent reference: a stable argsort of the concatenation prunes equal values by position.
        pruned = set(np.argsort(everything, kind="stable")[:n_prune].tolist())
        keep = slimming_keep(gammas, percentile, min_channels=0)
        flat_kept, offset = set(), 0
        for g, kept in zip(gammas, keep, strict=True):
            flat_kept |= {offset + i for i in kept}
            offset += len(g)
        assert flat_kept == set(range(everything.size)) - pruned
        assert len(pruned) == n_prune


def test_min_channels_keeps_the_largest_gammas_of_a_layer_that_would_vanish():
    gammas = [torch.tensor([0.01, -0.03, 0.02, 0.001]), torch.tensor([1.0, 2.0, -3.0, 4.0, 5.0, 6.0])]
    # 50% of 10 prunes 5: the whole first layer and the 1.0 of the second.
    assert slimming_keep(gammas, 0.5, min_channels=0) == [[], [1, 2, 3, 4, 5]]
    assert slimming_keep(gammas, 0.5) == [[1], [1, 2, 3, 4, 5]]
    assert slimming_keep(gammas, 0.5, min_channels=2) == [[1, 2], [1, 2, 3, 4, 5]]
    assert slimming_keep(gammas, 0.5, min_channels=9) == [[0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]


def test_percentile_must_be_a_fraction():
    gammas = [torch.ones(4)]
    for bad in (1.0, 70.0, -0.1):
        with pytest.raises(ValueError):
            slimming_threshold(gammas, bad)
        with pytest.raises(ValueError):
            slimming_keep(gammas, bad)
    with pytest.raises(ValueError):
        slimming_keep([], 0.5)
