"""inspect_rows(): a dry run that explains every group and lists unsupported layers instead of raising."""

from __future__ import annotations

import torch
from torch import nn
from zoo import INPUT_SHAPE, build_structure

from prunekit.channels import inspect_rows


def test_rows_explain_blocked_groups() -> None:
    example = torch.randn(1, *INPUT_SHAPE, dtype=torch.float64)
    rows = {r["name"]: r for r in inspect_rows(build_structure("softmax"), example)}
    assert rows["conv2"]["prunable_all"] is False
    assert rows["conv2"]["reason"] == "SoftmaxBackward0 acts across the channel dim"
    assert rows["fc"]["reason"] == "network output"
    assert rows["conv1"]["prunable_all"] and rows["conv1"]["prunable_internal"]
    assert rows["conv1"]["producers"] == ["conv1"] and rows["conv1"]["bn"] == "bn1"


def test_rows_list_unsupported_layers() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.Conv2d(4, 4, 3), nn.Flatten(),
                          nn.Linear(4 * 36, 2)).double()
    rows = inspect_rows(model, torch.randn(1, *INPUT_SHAPE, dtype=torch.float64))
    unsupported = [r for r in rows if r["kind"] == "unsupported"]
    assert unsupported == [{"kind": "unsupported", "name": "1", "type": "GroupNorm",
                            "reason": "owns parameters or buffers that prunekit cannot slice"}]
    assert not any(r["prunable_all"] for r in rows if r["kind"] == "group")
