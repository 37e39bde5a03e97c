"""Layer densities against an independent NumPy re-computation of RigL's `get_sparsities_erdos_renyi` (written
here with TensorFlow's (kh, kw, in, out) shapes and a vectorised eps search), on ResNet-20, VGG-11 and an MLP;
dense capping, overrides, exact nonzero counts and random masks."""

import math

import numpy as np
import pytest
import torch

from prunekit.errors import UserError
from prunekit.models import create_model
from prunekit.weights.densities import (
    layer_densities,
    layer_sparsities,
    maskable_weights,
    nonzero_counts,
    random_masks,
)


def tf_shape(shape):
    """PyTorch (out, in, kh, kw) / (out, in) -> TensorFlow (kh, kw, in, out) / (in, out)."""
    return (*shape[2:], shape[1], shape[0])


def numpy_rigl(shapes, default_sparsity, include_kernel=True, power=1.0):
    """RigL's algorithm re-computed with NumPy arrays: returns (sparsities, dense set)."""
    names = list(shapes)
    tf = [np.array(tf_shape(shapes[n]), dtype=np.float64) for n in names]
    n_param = np.array([np.prod(s) for s in tf])
    zeros = np.floor(n_param * default_sparsity)
    if include_kernel:
        raw = np.array([(s.sum() / s.prod()) ** power for s in tf])
    else:
        raw = np.array([(s[-2] + s[-1]) / (s[-2] * s[-1]) for s in tf])
    dense = np.zeros(len(names), dtype=bool)
    while True:
        rhs = (n_param - zeros)[~dense].sum() - zeros[dense].sum()
        eps = rhs / (raw[~dense] * n_param[~dense]).sum()
        top = raw[~dense].max()
        if top * eps > 1:
            dense |= (raw == top) & ~dense
            continue
        break
    sparsity = np.where(dense, 0.0, 1.0 - eps * raw)
    return dict(zip(names, sparsity.tolist(), strict=True)), {n for n, d in zip(names, dense, strict=True) if d}


MODELS = {
    "resnet20": lambda: create_model("resnet20"),
    "vgg11": lambda: create_model("vgg11"),
    "mlp": lambda: create_model("mlp", in_channels=1, input_size=8, hidden=(300, 100)),
}


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("density", [0.5, 0.2, 0.1, 0.05])
@pytest.mark.parametrize("kind", ["erk", "er"])
def test_erdos_renyi_densities_match_a_numpy_recomputation_of_rigl(model, density, kind):
    shapes = maskable_weights(MODELS[model]())
    ours = layer_sparsities(shapes, density, kind)
    theirs, _ = numpy_rigl(shapes, 1 - density, include_kernel=kind == "erk")
    assert ours.keys() == theirs.keys()
    for name in shapes:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-12), name
    counts = nonzero_counts(shapes, ours)
    expected = {n: math.prod(s) - math.floor(theirs[n] * math.prod(s)) for n, s in shapes.items()}
    assert counts == expected
    # the budget: total nonzeros equal (1 - S) * N up to the per-layer floors
    total = sum(math.prod(s) for s in shapes.values())
    assert abs(sum(counts.values()) - density * total) <= 2 * len(shapes)


def test_erk_caps_layers_and_resolves_the_scale():
    """At 10% ERK density ResNet-20's fc and its first 1x1 shortcut are capped dense (their raw ERK scores are the
    largest); the remaining layers share one re-solved eps; the capped set equals NumPy's."""
    shapes = maskable_weights(create_model("resnet20"))
    ours = layer_sparsities(shapes, 0.1, "erk")
    _, dense = numpy_rigl(shapes, 0.9)
    assert {n for n, s in ours.items() if s == 0.0} == dense == {"fc.weight", "layer2.0.shortcut.0.weight"}
    eps = {(1 - ours[n]) / (sum(s) / math.prod(s)) for n, s in shapes.items() if n not in dense}
    assert max(eps) - min(eps) < 1e-9


def test_mlp_capped_output_layer():
    shapes = maskable_weights(MODELS["mlp"]())
    ours = layer_sparsities(shapes, 0.2, "erk")
    assert ours["fc.weight"] == 0.0  # 100 x 10: the largest (n_in + n_out) / (n_in n_out)
    assert all(0 < ours[n] < 1 for n in shapes if n != "fc.weight")


def test_power_scale_zero_is_uniform_and_uniform_keeps_named_layers_dense():
    shapes = maskable_weights(create_model("resnet20"))
    flat = layer_sparsities(shapes, 0.2, "erk", erk_power_scale=0.0)
    assert all(s == pytest.approx(0.8, abs=1e-3) for s in flat.values())  # floors aside
    uniform = layer_sparsities(shapes, 0.2, "uniform", dense=["conv1.weight"])
    assert uniform["conv1.weight"] == 0.0 and all(uniform[n] == 0.8 for n in shapes if n != "conv1.weight")


def test_overrides_are_outside_the_budget_as_in_rigl():
    """RigL ignores custom sparsities in the eps search: the other layers get the densities they would get
    without the overridden layer."""
    shapes = maskable_weights(create_model("resnet20"))
    ours = layer_sparsities(shapes, 0.1, "erk", overrides={"fc.weight": 0.5})
    without = {n: s for n, s in shapes.items() if n != "fc.weight"}
    theirs, _ = numpy_rigl(without, 0.9)
    assert ours["fc.weight"] == 0.5
    for name in without:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-12)


def test_bad_input_is_a_user_error():
    shapes = {"a.weight": (4, 4)}
    with pytest.raises(UserError):
        layer_sparsities(shapes, 0.5, "gaussian")
    with pytest.raises(UserError):
        layer_sparsities(shapes, 1.5, "erk")
    with pytest.raises(UserError):
        layer_sparsities(shapes, 0.5, "erk", dense=["nope.weight"])


def test_random_masks_have_exactly_the_counts():
    shapes = maskable_weights(create_model("resnet20"))
    dens = layer_densities(shapes, 0.1, "erk")
    counts = nonzero_counts(shapes, layer_sparsities(shapes, 0.1, "erk"))
    masks = random_masks(shapes, counts, torch.Generator().manual_seed(0))
    for name, mask in masks.items():
        assert mask.dtype == torch.bool and tuple(mask.shape) == shapes[name]
        assert int(mask.sum()) == counts[name]
        assert mask.float().mean().item() == pytest.approx(dens[name])
    again = random_masks(shapes, counts, torch.Generator().manual_seed(0))
    assert all(torch.equal(masks[n], again[n]) for n in masks)
