"""CIFAR ResNets against the published sizes and an analytic count (He et al. 2016, Sec. 4.2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.measure import count_macs, count_params
from prunekit.models import create_model


def analytic_params_and_macs(depth: int, num_classes: int = 10) -> tuple[int, int]:
    """Parameters and conv+fc MACs of an option-B CIFAR ResNet, written out layer by layer."""
    n = (depth - 2) // 6
    params = 3 * 16 * 9 + 2 * 16  # stem conv + BN
    macs = 3 * 16 * 9 * 32 * 32
    in_ch = 16
    for width, side in ((16, 32), (32, 16), (64, 8)):
        for block in range(n):
            params += 9 * in_ch * width + 2 * width + 9 * width * width + 2 * width
            macs += (9 * in_ch * width + 9 * width * width) * side * side
            if block == 0 and in_ch != width:
                params += in_ch * width + 2 * width  # projection shortcut conv1x1 + BN
                macs += in_ch * width * side * side
            in_ch = width
    params += 64 * num_classes + num_classes
    macs += 64 * num_classes
    return params, macs


@pytest.mark.parametrize(
    ("depth", "published_params", "published_macs"),
    [(20, 0.27e6, 41e6), (56, 0.86e6, 127e6), (110, 1.73e6, 253e6)],
)
def test_published_sizes(depth: int, published_params: float, published_macs: float):
    model = create_model(f"resnet{depth}")
    params = count_params(model)
    macs = count_macs(model, torch.randn(1, 3, 32, 32))
    assert abs(params / published_params - 1) < 0.03
    assert abs(macs / published_macs - 1) < 0.03


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_matches_analytic_count(depth: int):
    model = create_model(f"resnet{depth}")
    params, macs = analytic_params_and_macs(depth)
    assert count_params(model) == params
    assert count_macs(model, torch.randn(2, 3, 32, 32)) == macs


def test_structure_and_names():
    model = create_model("resnet20", num_classes=100, in_channels=1)
    names = dict(model.named_modules())
    assert len(model.layer1) == len(model.layer2) == len(model.layer3) == 3
    assert isinstance(names["layer1.0.conv1"], nn.Conv2d)
    assert len(names["layer1.0.shortcut"]) == 0  # identity shortcut
    projection = names["layer2.0.shortcut.0"]
    assert isinstance(projection, nn.Conv2d) and projection.kernel_size == (1, 1) and projection.stride == (2, 2)
    assert isinstance(names["layer2.0.shortcut.1"], nn.BatchNorm2d)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 100


def test_block_is_conv_bn_relu_conv_bn_plus_shortcut():
    """A BasicBlock recomputed with functional ops, including the projection shortcut."""
    torch.manual_seed(0)
    block = create_model("resnet20").layer2[0].eval()
    x = torch.randn(2, 16, 8, 8)
    f = torch.nn.functional

    def bn(module: nn.BatchNorm2d, t: torch.Tensor) -> torch.Tensor:
        return f.batch_norm(t, module.running_mean, module.running_var, module.weight, module.bias, False)

    out = f.relu(bn(block.bn1, f.conv2d(x, block.conv1.weight, stride=2, padding=1)))
    out = bn(block.bn2, f.conv2d(out, block.conv2.weight, padding=1))
    shortcut = bn(block.shortcut[1], f.conv2d(x, block.shortcut[0].weight, stride=2))
    with torch.no_grad():
        torch.testing.assert_close(block(x), f.relu(out + shortcut))
