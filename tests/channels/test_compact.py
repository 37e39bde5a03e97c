"""compact(): the user shortcut leaves its input untouched and matches the masked reference."""

from __future__ import annotations

import copy

import pytest
import torch
from masked_reference import install_masks
from zoo import INPUT_SHAPE, build

from prunekit.channels import ChannelPlan, channel_groups, compact
from prunekit.errors import UserError


def test_compact_leaves_model_untouched_and_matches_masked_reference() -> None:
    model = build("resnet").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    example = torch.randn(2, *INPUT_SHAPE, dtype=torch.float64)
    keep = {"layer1.0.conv1": [0, 3, 4], "conv1": [1, 2, 5, 6, 7]}
    small = compact(model, example, keep)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert small.layer1[0].conv1.out_channels == 3 and small.conv1.out_channels == 5
    assert small.layer2[0].conv1.out_channels == 12  # not named: keeps all
    reference = copy.deepcopy(model)
    install_masks(reference, channel_groups(model, example), ChannelPlan(keep),
                  torch.randn(32, *INPUT_SHAPE, dtype=torch.float64))
    with torch.no_grad():
        assert (small(example) - reference(example)).abs().max().item() < 1e-9


def test_compact_rejects_names_outside_the_policy() -> None:
    example = torch.randn(1, *INPUT_SHAPE, dtype=torch.float64)
    with pytest.raises(UserError, match="unknown group 'conv1'"):
        compact(build("resnet"), example, {"conv1": [0]}, policy="internal")
    with pytest.raises(UserError, match="unknown group 'fc'"):
        compact(build("resnet"), example, {"fc": [0]})
