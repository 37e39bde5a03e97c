"""CIFAR MobileNetV2: size from torchvision's published count, depthwise convs, the CIFAR strides."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.measure import count_params
from prunekit.models import create_model

TORCHVISION_MOBILENET_V2_PARAMS = 3_504_872  # ImageNet, 1000 classes (torchvision documentation)


def test_params_equal_torchvision_with_a_10_class_head():
    # Strides do not change parameter counts: only the classifier differs (1280 x 1000 + 1000 vs 1280 x 10 + 10).
    expected = TORCHVISION_MOBILENET_V2_PARAMS - (1280 * 1000 + 1000) + (1280 * 10 + 10)
    assert count_params(create_model("mobilenetv2", num_classes=10)) == expected


def test_depthwise_convs_and_residuals():
    model = create_model("mobilenetv2")
    block = model.features[2]  # 16 -> 24, expansion 6
    depthwise = block.conv[1][0]
    assert isinstance(depthwise, nn.Conv2d) and depthwise.groups == depthwise.in_channels == 96
    assert not block.use_residual and model.features[3].use_residual
    assert isinstance(model.classifier[1], nn.Linear)


def test_cifar_strides_keep_32x32_until_the_32_channel_stage():
    model = create_model("mobilenetv2").eval()
    sides = []
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for layer in model.features:
            x = layer(x)
            sides.append(x.shape[-1])
    # stem, 16, 24 x2, 32 x3, 64 x4, 96 x3, 160 x3, 320, final 1x1 conv
    assert sides == [32, 32, 32, 32, 16, 16, 16, 8, 8, 8, 8, 8, 8, 8, 4, 4, 4, 4, 4]
