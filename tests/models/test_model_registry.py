"""Registry-wide checks: every model builds, runs forward and backward, and the user-factory path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.errors import UserError
from prunekit.models import MODELS, create_model, default_input_shape, list_models

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGENET_MODELS = {"resnet18", "resnet34", "resnet50"}


def small_input_shape(name: str) -> tuple[int, int, int]:
    channels, height, width = default_input_shape(name)
    return (channels, 64, 64) if name in IMAGENET_MODELS else (channels, height, width)


def test_registry_lists_the_promised_models():
    expected = {f"resnet{d}" for d in (20, 32, 44, 56, 110, 18, 34, 50)}
    expected |= {"vgg11", "vgg13", "vgg16", "vgg19", "mobilenetv2", "lenet5", "mlp", "small_cnn"}
    assert set(list_models()) == expected
    assert list_models() == sorted(list_models())


def test_default_input_shapes():
    assert default_input_shape("resnet20") == (3, 32, 32)
    assert default_input_shape("vgg16") == (3, 32, 32)
    assert default_input_shape("mobilenetv2") == (3, 32, 32)
    assert default_input_shape("lenet5") == (1, 28, 28)
    assert default_input_shape("mlp") == (1, 28, 28)
    assert default_input_shape("resnet50") == (3, 224, 224)


@pytest.mark.parametrize("name", list_models())
def test_forward_and_backward(name: str):
    torch.manual_seed(0)
    channels, height, width = small_input_shape(name)
    model = create_model(name, num_classes=7, in_channels=channels)
    x = torch.randn(2, channels, height, width)
    out = model(x)
    assert out.shape == (2, 7)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # every layer receives gradient signal (a disconnected module would keep a zero gradient)
    assert all(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", list_models())
def test_fx_traceable_and_equal(name: str):
    """No data-dependent control flow: torch.fx traces the model and the traced graph computes the same output."""
    torch.manual_seed(0)
    channels, height, width = small_input_shape(name)
    model = create_model(name, num_classes=5, in_channels=channels).eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(1, channels, height, width)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "small_cnn"])
def test_deterministic_under_manual_seed(name: str):
    torch.manual_seed(123)
    first = create_model(name).state_dict()
    torch.manual_seed(123)
    second = create_model(name).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_init_kaiming_convs_and_unit_batchnorm():
    torch.manual_seed(0)
    model = create_model("vgg16")
    conv = model.features[-4]  # the last 3x3 conv, 512 -> 512: 2.4M weights, a precise std estimate
    assert isinstance(conv, nn.Conv2d) and conv.out_channels == 512
    fan_out = conv.out_channels * 9
    expected_std = (2.0 / fan_out) ** 0.5  # He et al. 2015, Eq. 10 with fan_out
    assert abs(conv.weight.std().item() / expected_std - 1) < 0.02
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UserError, match="resnet20"):
        create_model("resnet2O")


def test_unknown_kwarg_is_a_user_error():
    with pytest.raises(UserError, match="resnet20"):
        create_model("resnet20", depth=3)


def test_kwargs_reach_the_factory():
    model = create_model("small_cnn", num_classes=3, in_channels=2, widths=(8, 16))
    assert model.features.conv1.in_channels == 2
    assert model.fc.in_features == 16 and model.fc.out_features == 3
    assert MODELS.get("small_cnn") is not None


# ---- user factories ("package.module:function") ----


@pytest.fixture
def repo_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT))


def test_user_factory_builds_with_arguments(repo_on_path):
    model = create_model("tests.models.factory_fixtures:tiny_net", num_classes=4, in_channels=2, hidden=16)
    assert model(torch.randn(3, 2, 16, 16)).shape == (3, 4)
    assert model[0].in_channels == 2 and model[0].out_channels == 16
    assert default_input_shape("tests.models.factory_fixtures:tiny_net") == (3, 16, 16)


def test_user_factory_without_input_shape(repo_on_path):
    with pytest.raises(UserError, match="default_input_shape"):
        default_input_shape("tests.models.factory_fixtures:no_shape_net")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.models.no_such_module:tiny_net", "cannot import module"),
        ("tests.models.factory_fixtures:no_such_function", "has no attribute 'no_such_function'"),
        ("tests.models.factory_fixtures:NOT_CALLABLE", "not callable"),
        ("tests.models.factory_fixtures:returns_a_dict", "not a torch.nn.Module"),
        ("tests.models.factory_fixtures:tiny_net", "does not accept"),  # with an unknown kwarg, below
        (":tiny_net", "must look like"),
        ("tests.models.factory_fixtures:", "must look like"),
    ],
)
def test_user_factory_errors_are_one_line(repo_on_path, spec: str, message: str):
    kwargs = {"depth": 3} if message == "does not accept" else {}
    with pytest.raises(UserError, match=message) as caught:
        create_model(spec, **kwargs)
    assert "\n" not in str(caught.value)


def test_user_factory_whose_import_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "prunekit_broken_user_module.py").write_text("import a_package_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="ModuleNotFoundError") as caught:
        create_model("prunekit_broken_user_module:build")
    assert "\n" not in str(caught.value)
    sys.modules.pop("prunekit_broken_user_module", None)


# ---- torch-pruning can trace every family and prune a channel group ----


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("resnet20", "layer1.0.conv1"),
        ("resnet18", "layer2.0.conv1"),
        ("resnet50", "layer1.0.conv2"),
        ("vgg11", "features.4"),
        ("mobilenetv2", "features.2.conv.0.0"),
        ("small_cnn", "features.conv2"),
        ("lenet5", "conv2"),
    ],
)
def test_torch_pruning_removes_an_internal_channel(name: str, target: str):
    tp = pytest.importorskip("torch_pruning")
    channels, height, width = small_input_shape(name)
    model = create_model(name, in_channels=channels).eval()
    x = torch.randn(1, channels, height, width)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    conv = dict(model.named_modules())[target]
    before = conv.out_channels
    graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=[0, 1]).prune()
    assert conv.out_channels == before - 2
    assert model(x).shape == (1, 10)


def test_torch_pruning_follows_the_residual_stream():
    """Pruning the stem of resnet20 shrinks every layer that reads or writes the 16-channel stream."""
    tp = pytest.importorskip("torch_pruning")
    model = create_model("resnet20").eval()
    x = torch.randn(1, 3, 32, 32)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    graph.get_pruning_group(model.conv1, tp.prune_conv_out_channels, idxs=[3]).prune()
    for block in model.layer1:
        assert block.conv1.in_channels == 15 and block.conv2.out_channels == 15
    assert model.layer2[0].conv1.in_channels == 15 and model.layer2[0].shortcut[0].in_channels == 15
    assert model(x).shape == (1, 10)
