"""ImageNet ResNets against torchvision's published parameter counts and MACs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.measure import count_macs, count_params
from prunekit.models import create_model

# torchvision model documentation (IMAGENET1K_V1 weights): exact parameter counts and GFLOPS (which are MACs).
PUBLISHED = {
    "resnet18": (11_689_512, 1.81e9),
    "resnet34": (21_797_672, 3.66e9),
    "resnet50": (25_557_032, 4.09e9),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_params(name: str):
    assert count_params(create_model(name, num_classes=1000)) == PUBLISHED[name][0]


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_published_macs_at_224(name: str):
    macs = count_macs(create_model(name, num_classes=1000), torch.randn(1, 3, 224, 224))
    assert abs(macs / PUBLISHED[name][1] - 1) < 0.01


def test_any_input_size_and_names():
    model = create_model("resnet50", num_classes=3, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 40, 56)).shape == (1, 3)
    names = dict(model.named_modules())
    assert isinstance(names["layer1.0.downsample.0"], nn.Conv2d)  # 64 -> 256 projection, stride 1
    assert names["layer2.0.conv2"].stride == (2, 2)  # v1.5: the stride sits in the 3x3 conv
    assert model.layer1[1].downsample is None
    assert model.fc.in_features == 2048
