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
    pruned_architecture,
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


def test_architecture_from_the_plan_alone(tmp_path: Path) -> None:
    subnet, plan = pruned_resnet20()
    save_pruned_model(tmp_path / "run", subnet, plan, SPEC)
    (tmp_path / "run" / "model.safetensors").unlink()  # the plan is enough for the architecture
    supernet, rebuilt = pruned_architecture(tmp_path / "run")
    shapes = {name: tuple(t.shape) for name, t in subnet.state_dict().items()}
    assert {name: tuple(t.shape) for name, t in rebuilt.state_dict().items()} == shapes
    assert supernet.layer1[0].conv1.out_channels == 16
    save_pruned_model(tmp_path / "dense", supernet, ChannelPlan(), SPEC)
    dense_supernet, dense_subnet = pruned_architecture(tmp_path / "dense")
    assert dense_subnet is dense_supernet


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


GROUPNORM_FACTORY = '''
from torch import nn


def build(num_classes=10, in_channels=3):
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
'''


def test_dense_user_model_with_groupnorm_loads_bitwise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A user factory with a layer channel pruning cannot slice: a dense run (empty plan) must still save and load.
    (tmp_path / "gn_user_model.py").write_text(GROUPNORM_FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {"name": "gn_user_model:build", "num_classes": 4, "in_channels": 3, "kwargs": {},
            "input_shape": [3, 8, 8]}
    torch.manual_seed(0)
    model = models.create_model(spec["name"], num_classes=4, in_channels=3)
    with torch.no_grad():  # trained-looking values, different from a fresh model
        for tensor in model.state_dict().values():
            tensor.add_(0.1 * torch.randn_like(tensor))
    save_pruned_model(tmp_path / "run", model, ChannelPlan(), spec)
    with pytest.raises(UserError, match="never imports code"):  # a user factory loads only when passed
        load_pruned_model(tmp_path / "run")
    factory = models.load_user_factory(spec["name"])
    loaded = load_pruned_model(tmp_path / "run", model_fn=factory)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    # a non-empty plan needs the channel groups, which refuse the GroupNorm with a one-line UserError
    save_pruned_model(tmp_path / "pruned", model, ChannelPlan({"0": [0, 1]}), spec)
    with pytest.raises(UserError, match="GroupNorm"):
        load_pruned_model(tmp_path / "pruned", model_fn=factory)


class OffsetSession:
    """Stands in for onnxruntime.InferenceSession: returns PyTorch's own output plus `offset` (set per test), so
    the tolerance rule is tested without depending on float32 round-off of a real runtime."""

    reference: torch.Tensor
    offset: float

    def __init__(self, model_bytes: bytes, providers: list[str]) -> None:
        assert model_bytes[:2] and providers == ["CPUExecutionProvider"]

    def run(self, names: object, feeds: dict) -> list:
        return [(self.reference + self.offset).numpy()]


@pytest.mark.parametrize("relative, written", [(0.5e-4, True), (1e-3, False)])
def test_onnx_tolerance_scales_with_the_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: float,
                                               written: bool) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.mul_(300.0)  # outputs of order 100: a fixed 1e-5 would reject float32 noise
    example = torch.randn(2, 4)
    with torch.no_grad():
        OffsetSession.reference = model(example)
    scale = float(OffsetSession.reference.abs().max())
    OffsetSession.offset = relative * scale
    monkeypatch.setattr(onnxruntime, "InferenceSession", OffsetSession)
    target = tmp_path / "out" / "model.onnx"
    target.parent.mkdir()
    if written:
        diff = export_onnx(model, example, target)
        assert diff == pytest.approx(relative * scale, rel=1e-3) and diff <= 1e-5 + 1e-4 * scale
        assert target.stat().st_size > 0
    else:
        with pytest.raises(UserError, match="ONNX export differs from PyTorch"):
            export_onnx(model, example, target)
        assert not target.exists()
    assert [p.name for p in target.parent.iterdir()] == (["model.onnx"] if written else [])  # no temp files


# ---- crafted pruned.json records: each a one-line UserError, nothing built that the record does not allow ----

def crafted(tmp_path: Path, **changes: object) -> Path:
    """A saved dense small_cnn whose pruned.json then gets `changes` (top-level keys, or model.<key>)."""
    from prunekit.io import read_json, write_json

    spec = {"name": "small_cnn", "num_classes": 10, "in_channels": 1, "kwargs": {}, "input_shape": [1, 8, 8]}
    directory = tmp_path / "crafted"
    save_pruned_model(directory, models.create_model("small_cnn", num_classes=10, in_channels=1), ChannelPlan(),
                      spec)
    record = read_json(directory / "pruned.json")
    for key, value in changes.items():
        if key.startswith("model_"):
            record["model"][key[len("model_"):]] = value
        else:
            record[key] = value
    write_json(directory / "pruned.json", record)
    return directory


@pytest.mark.parametrize(("changes", "message"), [
    ({"format_version": 2}, "format_version 2 is not supported"),
    ({"format_version": True}, "format_version"),
    ({"format_version": None}, "format_version"),
    ({"model_num_classes": -3}, r"num_classes must be an integer in \[1, 100000\]"),
    ({"model_num_classes": 10**12}, "num_classes must be an integer"),
    ({"model_num_classes": 2.5}, "num_classes must be an integer"),
    ({"model_in_channels": 0}, "in_channels"),
    ({"model_input_shape": [1, 8]}, "input_shape"),
    ({"model_input_shape": [1, 100000, 8]}, "input_shape"),
    ({"model_input_shape": [3, 8, 8]}, "must start with in_channels"),
    ({"model_kwargs": {"widths": [float("nan")]}}, "not a finite number"),
    ({"model_kwargs": {"widths": [8, 10**40]}}, "more than 30 digits"),
    ({"model_kwargs": {"widths": [65536, 65536, 65536]}}, "parameters"),  # counted on the meta device
    ({"model_kwargs": {"no_such_argument": 1}}, "does not accept"),
    ({"model_kwargs": {"widths": "abc"}}, "cannot be built"),
    ({"model_kwargs": [1]}, "kwargs must be an object"),
    ({"model_name": "no_such_model"}, "unknown model"),
    ({"model_name": "torch.hub:load"}, "never imports code"),
    ({"model": []}, "'model' must be an object"),
    ({"policy": "everything"}, "unknown channel policy"),
    ({"plan": {"keep": {"no_such_group": [0]}}}, "plan"),
    ({"plan": {"keep": {"features.conv1": [10**6]}}}, "plan"),
    ({"plan": []}, "plan"),
])
def test_crafted_records_are_one_line_user_errors(tmp_path: Path, changes: dict, message: str) -> None:
    directory = crafted(tmp_path, **changes)
    with pytest.raises(UserError, match=message) as caught:
        load_pruned_model(directory)
    assert "\n" not in str(caught.value)


def test_non_object_record(tmp_path: Path) -> None:
    directory = crafted(tmp_path)
    (directory / "pruned.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="expected a JSON object"):
        load_pruned_model(directory)


def test_deep_and_non_utf8_records(tmp_path: Path) -> None:
    directory = crafted(tmp_path)
    (directory / "pruned.json").write_text("[" * 100_000 + "]" * 100_000)  # a RecursionError before
    with pytest.raises(UserError, match="nested"):
        load_pruned_model(directory)
    (directory / "pruned.json").write_bytes(b'{"format_version": 1, "model": "\xff\xfe"}')
    with pytest.raises(UserError, match="UTF-8"):
        load_pruned_model(directory)


def test_model_fn_replaces_the_named_factory(tmp_path: Path) -> None:
    directory = crafted(tmp_path, model_name="somewhere.else:build")
    calls = []

    def build(num_classes: int, in_channels: int) -> torch.nn.Module:
        calls.append((num_classes, in_channels))
        return models.create_model("small_cnn", num_classes=num_classes, in_channels=in_channels)

    model = load_pruned_model(directory, model_fn=build)
    assert calls == [(10, 1)] and model.fc.out_features == 10
    with pytest.raises(UserError, match="must be a callable"):
        load_pruned_model(directory, model_fn="somewhere.else:build")  # type: ignore[arg-type]
