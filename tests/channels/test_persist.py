"""save/load of pruned models (bitwise) and ONNX export (checked with onnxruntime)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from zoo import INPUT_SHAPE, build

from prunekit.channels import (
    ChannelPlan,
    channel_groups,
    export_onnx,
    load_pruned_model,
    materialize,
    save_pruned_model,
)
from prunekit.errors import UserError

models = pytest.importorskip("prunekit.models")
SPEC = {"name": "resnet20", "num_classes": 10, "in_channels": 3, "kwargs": {}, "input_shape": [3, 16, 16]}


def pruned_resnet20() -> tuple[torch.nn.Module, ChannelPlan]:
    torch.manual_seed(0)
    supernet = models.create_model("resnet20")
    groups = channel_groups(supernet, torch.randn(1, 3, 16, 16))
    generator = torch.Generator().manual_seed(0)
    plan = ChannelPlan({g.name: sorted(torch.randperm(g.size, generator=generator)[: g.size // 2].tolist())
                        for g in groups})
    subnet = materialize(supernet, plan, groups)
    with torch.no_grad():  # trained-looking weights and statistics, different from a fresh model
        for tensor in subnet.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.01 * torch.randn_like(tensor))
    return subnet.eval(), plan


def test_save_load_round_trip_is_bitwise(tmp_path: Path) -> None:
    subnet, plan = pruned_resnet20()
    save_pruned_model(tmp_path / "run", subnet, plan, SPEC)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model.safetensors", "pruned.json"]
    loaded = load_pruned_model(tmp_path / "run")
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), subnet(x))
    assert loaded.layer1[0].conv1.out_channels == subnet.layer1[0].conv1.out_channels == 8


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_pruned_model(tmp_path / "missing")
    subnet, plan = pruned_resnet20()
    save_pruned_model(tmp_path / "run", subnet, plan, SPEC)
    weights = tmp_path / "run" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_pruned_model(tmp_path / "run")
    (tmp_path / "run" / "pruned.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_pruned_model(tmp_path / "run")
    with pytest.raises(UserError, match="model_spec lacks"):
        save_pruned_model(tmp_path / "other", subnet, plan, {"name": "resnet20"})


def test_onnx_export_of_a_compacted_model(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    supernet = build("mobilenetv2", dtype=torch.float32).eval()
    example = torch.randn(2, *INPUT_SHAPE)
    groups = channel_groups(supernet, example)
    subnet = materialize(supernet, ChannelPlan({g.name: list(range(0, g.size, 2)) for g in groups}), groups)
    diff = export_onnx(subnet, example, tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx").stat().st_size > 0
    assert 0.0 <= diff <= 1e-5
