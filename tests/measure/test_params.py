"""Parameter counts against hand computation."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.measure import count_nonzero_params, count_params


def test_count_params_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 2))
    assert count_params(model) == (3 * 8 * 9 + 8) + (8 + 8) + (8 * 2 + 2)


def test_shared_parameters_count_once():
    shared = nn.Linear(4, 4)
    assert count_params(nn.Sequential(shared, shared)) == 4 * 4 + 4


def test_count_nonzero_params():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 3.0]]))
        layer.bias.zero_()
    assert count_nonzero_params(layer) == 3
