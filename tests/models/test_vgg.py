"""CIFAR VGG with BN: sizes written out from the configuration tables."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.measure import count_macs, count_params
from prunekit.models import create_model

# Conv widths of VGG configurations A, B, D, E (Simonyan & Zisserman 2015, Table 1), pools at the same places.
WIDTHS = {
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


@pytest.mark.parametrize("name", sorted(WIDTHS))
def test_params_and_macs_by_hand(name: str):
    params, macs, in_ch, side = 0, 0, 3, 32
    for stage in WIDTHS[name]:
        for width in stage:
            params += 9 * in_ch * width + 2 * width
            macs += 9 * in_ch * width * side * side
            in_ch = width
        side //= 2
    params += 512 * 10 + 10
    macs += 512 * 10
    model = create_model(name)
    assert count_params(model) == params
    assert count_macs(model, torch.randn(1, 3, 32, 32)) == macs


def test_vgg16_published_size():
    """The usual CIFAR VGG-16 (BN, one linear classifier): 14.7M params, 313M MACs."""
    model = create_model("vgg16")
    assert abs(count_params(model) / 14.73e6 - 1) < 0.01
    assert abs(count_macs(model, torch.randn(1, 3, 32, 32)) / 313.2e6 - 1) < 0.01


def test_classifier_and_names():
    model = create_model("vgg11", num_classes=100, in_channels=1)
    assert isinstance(model.classifier, nn.Linear) and model.classifier.out_features == 100
    assert isinstance(model.features[0], nn.Conv2d) and model.features[0].in_channels == 1
    assert isinstance(model.features[1], nn.BatchNorm2d)
