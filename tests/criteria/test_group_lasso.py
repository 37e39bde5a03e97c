import math

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.criteria.group_lasso import (
    calibrate_group_lasso_weight,
    group_lasso_layers,
    group_lasso_penalty,
    group_lasso_penalty_from_layers,
    removable_channels,
    sparse_channel_masks,
)

EPS = 1e-8


class MixedNet(nn.Module):
    """conv -> BN -> grouped conv -> depthwise conv -> 1x1 conv -> fc1 -> fc2 (classifier)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1, groups=2)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.conv3 = nn.Conv2d(6, 5, 1)
        self.fc1 = nn.Linear(5, 7)
        self.fc2 = nn.Linear(7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.conv3(self.dw(self.conv2(x))).mean(dim=(2, 3))
        return self.fc2(torch.relu(self.fc1(x)))


def _norm(values: np.ndarray, eps: float = EPS) -> float:
    return math.sqrt(float(np.sum(values.astype(np.float64) ** 2)) + eps)


def _output_terms(w: np.ndarray, eps: float = EPS) -> float:
    return sum(_norm(w[o], eps) for o in range(w.shape[0]))


def _input_terms(w: np.ndarray, groups: int = 1, eps: float = EPS) -> float:
    """Input channel c of a grouped layer is read by its group's output rows at column c mod (in/groups)."""
    out_per_group, in_per_group = w.shape[0] // groups, w.shape[1]
    total = 0.0
    for c in range(groups * in_per_group):
        g = c // in_per_group
        total += _norm(w[g * out_per_group : (g + 1) * out_per_group, c % in_per_group], eps)
    return total


def _weights(model: nn.Module) -> dict[str, np.ndarray]:
    return {name: m.weight.detach().numpy() for name, m in model.named_modules() if hasattr(m, "weight")}


def _mixed_net_reference(w: dict[str, np.ndarray], skip: tuple[str, ...] = ()) -> float:
    terms = {
        "conv1": _output_terms(w["conv1"]),  # input = network input: not grouped
        "conv2": _output_terms(w["conv2"]) + _input_terms(w["conv2"], groups=2),
        "conv3": _output_terms(w["conv3"]) + _input_terms(w["conv3"]),
        "fc1": _output_terms(w["fc1"]) + _input_terms(w["fc1"]),
        "fc2": _input_terms(w["fc2"]),  # classifier outputs: not grouped
    }  # dw is depthwise: not grouped at all
    return sum(value for name, value in terms.items() if name not in skip)


def test_penalty_matches_hand_computed_groups():
    torch.manual_seed(0)
    model = MixedNet()
    penalty = group_lasso_penalty(model)
    assert penalty.item() == pytest.approx(_mixed_net_reference(_weights(model)), rel=1e-6)


def test_layers_report_which_sides_are_grouped():
    sides = {
        layer.name: (layer.input_groups, layer.output_groups) for layer in group_lasso_layers(MixedNet())
    }
    assert sides == {
        "conv1": (False, True),
        "conv2": (True, True),
        "conv3": (True, True),
        "fc1": (True, True),
        "fc2": (True, False),
    }


def test_a_channel_multiplier_conv_is_grouped_like_a_grouped_conv():
    # groups == in_channels but out = 2 * in: not depthwise (that needs in == out), so both sides are grouped:
    # every output filter, and each input channel's two filters W[2i:2i+2, 0].
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 8, 3, groups=4), nn.Conv2d(8, 8, 3, groups=8),
                          nn.Flatten(), nn.LazyLinear(5))
    model(torch.zeros(1, 3, 7, 7))  # materialize the lazy Linear
    assert [layer.name for layer in group_lasso_layers(model)] == ["0", "1", "4"]  # "2" is depthwise
    w = _weights(model)
    expected = (_output_terms(w["0"]) + _output_terms(w["1"]) + _input_terms(w["1"], groups=4)
                + _input_terms(w["4"]))
    assert group_lasso_penalty(model).item() == pytest.approx(expected, rel=1e-6)


def test_penalty_from_cached_layers_equals_the_penalty_and_its_gradient():
    torch.manual_seed(4)
    model = MixedNet()
    layers = group_lasso_layers(model, exclude=("fc1",))
    direct = group_lasso_penalty(model, exclude=("fc1",))
    cached = group_lasso_penalty_from_layers(layers)
    assert cached.item() == pytest.approx(direct.item(), rel=1e-6)
    assert cached.item() == pytest.approx(_mixed_net_reference(_weights(model), skip=("fc1",)), rel=1e-6)
    (grad_direct,) = torch.autograd.grad(direct, model.conv2.weight)
    (grad_cached,) = torch.autograd.grad(cached, model.conv2.weight)
    torch.testing.assert_close(grad_cached, grad_direct)


def test_exclude_drops_whole_modules_and_overrides_pick_first_and_classifier():
    torch.manual_seed(1)
    model = MixedNet()
    w = _weights(model)
    excluded = group_lasso_penalty(model, exclude=("conv3", "fc1")).item()
    assert excluded == pytest.approx(_mixed_net_reference(w, skip=("conv3", "fc1")), rel=1e-6)
    # fc1 declared the classifier: its output rows leave, fc2's output rows join.
    overridden = group_lasso_penalty(model, classifier="fc1").item()
    expected = _mixed_net_reference(w) - _output_terms(w["fc1"]) + _output_terms(w["fc2"])
    assert overridden == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="conv9"):
        group_lasso_penalty(model, exclude=("conv9",))


def test_biases_and_batchnorm_do_not_enter_the_penalty():
    torch.manual_seed(2)
    model = MixedNet()
    before = group_lasso_penalty(model).item()
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.add_(5.0)
        model.bn1.weight.mul_(3.0)
    assert group_lasso_penalty(model).item() == before


def _tiny_double_net() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(2, 3, 1, bias=False), nn.Conv2d(3, 2, 1, bias=False), nn.Flatten(), nn.Linear(2, 3)
    ).double()


def _tiny_reference(w0: np.ndarray, w1: np.ndarray, w3: np.ndarray) -> float:
    return _output_terms(w0) + _output_terms(w1) + _input_terms(w1) + _input_terms(w3)


def test_gradient_matches_finite_differences_of_the_reference():
    model = _tiny_double_net()
    group_lasso_penalty(model).backward()
    weights = [model[0].weight, model[1].weight, model[3].weight]
    arrays = [w.detach().numpy().copy() for w in weights]
    step = 1e-6
    for k, array in enumerate(arrays):
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            plus = [a.copy() for a in arrays]
            minus = [a.copy() for a in arrays]
            plus[k][index] += step
            minus[k][index] -= step
            numeric[index] = (_tiny_reference(*plus) - _tiny_reference(*minus)) / (2 * step)
        np.testing.assert_allclose(weights[k].grad.numpy(), numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("eps", [EPS, 0.0])
def test_gradient_of_all_zero_groups_is_zero_not_nan(eps):
    model = _tiny_double_net()
    with torch.no_grad():
        model[1].weight.zero_()  # every group of this layer is all-zero
    group_lasso_penalty(model, eps=eps).backward()
    for parameter in model.parameters():
        if parameter.grad is not None:
            assert torch.isfinite(parameter.grad).all()
    assert torch.equal(model[1].weight.grad, torch.zeros_like(model[1].weight))


def test_exact_norm_when_eps_is_zero():
    model = _tiny_double_net()
    w = [model[i].weight.detach().numpy() for i in (0, 1, 3)]
    expected = (
        _output_terms(w[0], 0.0)
        + _output_terms(w[1], 0.0)
        + _input_terms(w[1], eps=0.0)
        + _input_terms(w[2], eps=0.0)
    )
    assert group_lasso_penalty(model, eps=0.0).item() == pytest.approx(expected, rel=1e-12)


def test_calibrated_weight_makes_penalty_the_chosen_share_of_the_loss():
    for ce, penalty, ratio in [(2.3, 150.0, 0.2), (0.7, 3.0, 0.3), (4.6, 1e4, 0.1)]:
        lam = calibrate_group_lasso_weight(ce, penalty, ratio)
        assert lam * penalty / (ce + lam * penalty) == pytest.approx(ratio, rel=1e-12)
    assert calibrate_group_lasso_weight(torch.tensor(2.0), torch.tensor(8.0), 0.2) == pytest.approx(
        0.2 * 2.0 / (0.8 * 8.0)
    )


def test_calibration_rejects_bad_ratio_and_degenerate_losses():
    with pytest.raises(ValueError):
        calibrate_group_lasso_weight(2.0, 10.0, 1.0)
    with pytest.raises(ValueError):
        calibrate_group_lasso_weight(2.0, 10.0, 0.0)
    with pytest.raises(ValueError):
        calibrate_group_lasso_weight(2.0, 0.0, 0.2)
    with pytest.raises(ValueError):
        calibrate_group_lasso_weight(float("nan"), 1.0, 0.2)


def test_sparse_masks_match_numpy_on_planted_sparsity():
    torch.manual_seed(4)
    conv = nn.Conv2d(4, 5, 3)
    linear = nn.Linear(6, 3)
    model = nn.ModuleDict({"conv": conv, "fc": linear})
    with torch.no_grad():
        conv.weight[1].uniform_(-9e-5, 9e-5)  # output 1 sparse
        conv.weight[3].fill_(1e-5)
        conv.weight[3, 0, 0, 0] = -5e-4  # output 3 dense through a negative weight (|w| rule)
        conv.weight[:, 2].fill_(0.0)  # input 2 sparse
        linear.weight[:, 4].fill_(5e-5)  # input 4 sparse
        linear.weight[0].fill_(0.0)  # output 0 sparse
    masks = sparse_channel_masks(model)
    for name, module in (("conv", conv), ("fc", linear)):
        w = np.abs(module.weight.detach().numpy())
        expected_out = [bool(np.all(w[o] < 1e-4)) for o in range(w.shape[0])]
        expected_in = [bool(np.all(w[:, i] < 1e-4)) for i in range(w.shape[1])]
        assert masks[name]["output"].tolist() == expected_out
        assert masks[name]["input"].tolist() == expected_in
    assert masks["conv"]["output"].tolist() == [False, True, False, False, False]
    assert masks["conv"]["input"].tolist() == [False, False, True, False]
    assert masks["fc"]["input"].tolist() == [False, False, False, False, True, False]
    assert masks["fc"]["output"].tolist() == [True, False, False]


def test_sparse_masks_of_grouped_and_depthwise_convs_use_true_input_groups():
    torch.manual_seed(5)
    grouped = nn.Conv2d(4, 6, 1, groups=2)  # in/group 2, out/group 3
    depthwise = nn.Conv2d(3, 6, 1, groups=3)  # channel multiplier 2
    with torch.no_grad():
        grouped.weight[3:6, 1].zero_()  # input channel 3 = group 1, column 1
        grouped.weight[0:3, 0].zero_()  # input channel 0 = group 0, column 0
        depthwise.weight[2:4].zero_()  # input channel 1 is read by outputs 2 and 3
    masks = sparse_channel_masks(nn.ModuleDict({"g": grouped, "dw": depthwise}))
    assert masks["g"]["input"].tolist() == [True, False, False, True]
    assert masks["dw"]["input"].tolist() == [False, True, False]
    assert masks["dw"]["output"].tolist() == [False, False, True, True, False, False]


def test_removable_channels_is_sparse_for_every_writer_and_reader():
    rng = np.random.default_rng(6)
    writers = [rng.random(12) < 0.6 for _ in range(3)]  # e.g. a residual stream's block outputs
    readers = [rng.random(12) < 0.6 for _ in range(4)]
    expected = [all(v[c] for v in writers + readers) for c in range(12)]
    removable = removable_channels(
        [torch.from_numpy(v) for v in writers], [torch.from_numpy(v) for v in readers]
    )
    assert removable.tolist() == expected
    # Kept channels = the union of each layer's dense channels.
    dense_union = set().union(*({c for c in range(12) if not v[c]} for v in writers + readers))
    assert {c for c in range(12) if not removable[c]} == dense_union


def test_removable_channels_rejects_missing_sides_and_mismatched_vectors():
    sparse = torch.tensor([True, False])
    with pytest.raises(ValueError):
        removable_channels([], [sparse])
    with pytest.raises(ValueError):
        removable_channels([sparse], [])
    with pytest.raises(ValueError):
        removable_channels([sparse], [torch.tensor([True, False, True])])
    with pytest.raises(ValueError):
        removable_channels([sparse], [torch.tensor([1, 0])])


def test_removing_both_side_sparse_channels_keeps_the_function():
    """conv -> BN -> ReLU -> conv; channel 1 sparse on both sides, 2 only as an output, 0 only as an input."""
    torch.manual_seed(7)
    conv1, bn, conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 3, padding=1)
    with torch.no_grad():
        bn.bias.copy_(torch.tensor([0.3, 0.5, 0.7, -0.2]))  # zero filters still emit ReLU(beta)
        bn.running_mean.uniform_(-0.1, 0.1)
        conv1.weight[1].zero_()
        conv1.weight[2].zero_()
        conv2.weight[:, 1].zero_()
        conv2.weight[:, 0].zero_()
    model = nn.Sequential(conv1, bn, nn.ReLU(), conv2).eval()
    masks = sparse_channel_masks(model)
    removable = removable_channels([masks["0"]["output"]], [masks["3"]["input"]])
    assert removable.tolist() == [False, True, False, False]

    def sliced(drop: list[int]) -> nn.Sequential:
        keep = [c for c in range(4) if c not in drop]
        small1, small_bn, small2 = (
            nn.Conv2d(3, len(keep), 3, padding=1),
            nn.BatchNorm2d(len(keep)),
            nn.Conv2d(len(keep), 2, 3, padding=1),
        )
        with torch.no_grad():
            small1.weight.copy_(conv1.weight[keep])
            small1.bias.copy_(conv1.bias[keep])
            for attr in ("weight", "bias", "running_mean", "running_var"):
                getattr(small_bn, attr).copy_(getattr(bn, attr)[keep])
            small2.weight.copy_(conv2.weight[:, keep])
            small2.bias.copy_(conv2.bias)
        return nn.Sequential(small1, small_bn, nn.ReLU(), small2).eval()

    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        full = model(x)
        assert torch.allclose(sliced(removable.nonzero().flatten().tolist())(x), full, atol=1e-6)
        # Removing the output-only-sparse channel 2 drops its ReLU(beta) constant and changes the function.
        assert not torch.allclose(sliced([2])(x), full, atol=1e-3)
