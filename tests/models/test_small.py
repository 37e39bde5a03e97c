"""LeNet-5, the MLP and the small CNN, at 28x28 and at 8x8 (scikit-learn digits)."""

from __future__ import annotations

import pytest
import torch

from prunekit.errors import UserError
from prunekit.measure import count_params
from prunekit.models import create_model


def test_lenet5_classic_size():
    # conv1 1*6*25+6, conv2 6*16*25+16, fc 400*120+120, 120*84+84, 84*10+10 = 61,706 (LeCun et al. 1998 layout)
    assert count_params(create_model("lenet5", in_channels=1)) == 156 + 2416 + 48120 + 10164 + 850


def test_mlp_is_lenet_300_100():
    assert count_params(create_model("mlp", in_channels=1)) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("lenet5", {"input_size": 8}), ("mlp", {"input_size": 8}), ("small_cnn", {})],
)
def test_8x8_digits(name: str, kwargs: dict):
    model = create_model(name, num_classes=10, in_channels=1, **kwargs)
    assert model(torch.randn(4, 1, 8, 8)).shape == (4, 10)


@pytest.mark.parametrize("side", [8, 16, 28, 32])
def test_small_cnn_sizes_and_widths(side: int):
    model = create_model("small_cnn", num_classes=5, in_channels=3)
    assert model(torch.randn(2, 3, side, side)).shape == (2, 5)
    widths = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths)


def test_lenet5_too_small_is_a_user_error():
    with pytest.raises(UserError, match="input_size"):
        create_model("lenet5", input_size=3)
