"""inspect_rows(): a dry run that explains every group and lists unsupported layers instead of raising."""

from __future__ import annotations

import torch
from zoo import INPUT_SHAPE, CustomLayerNet, build

from prunekit.channels import inspect_rows


def test_rows_explain_blocked_groups() -> None:
    rows = {r["name"]: r for r in inspect_rows(build("grouped"), torch.randn(1, *INPUT_SHAPE, dtype=torch.float64))}
    assert rows["features.3"]["prunable_all"] is False and "grouped convolution" in rows["features.3"]["reason"]
    assert rows["features.0"]["prunable_all"] is False
    assert rows["fc"]["reason"] == "network output"
    assert rows["features.6"]["prunable_all"] and rows["features.6"]["prunable_internal"]
    assert rows["features.6"]["producers"] == ["features.6"] and rows["features.6"]["bn"] == "features.7"


def test_rows_list_unsupported_layers() -> None:
    rows = inspect_rows(CustomLayerNet().double(), torch.randn(1, *INPUT_SHAPE, dtype=torch.float64))
    unsupported = [r for r in rows if r["kind"] == "unsupported"]
    assert unsupported == [{"kind": "unsupported", "name": "scale", "type": "ChannelScale",
                            "reason": "owns parameters or buffers that prunekit cannot slice"}]
    assert not any(r["prunable_all"] for r in rows if r["kind"] == "group")
