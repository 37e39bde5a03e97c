"""Channel-group discovery: policies, residual streams, concat offsets, flatten, blocked and unsupported layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from zoo import INPUT_SHAPE, CustomLayerNet, build

from prunekit.channels import channel_groups
from prunekit.channels.groups import is_depthwise, is_plain_weight_layer
from prunekit.errors import UserError


def x(batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, *INPUT_SHAPE, dtype=torch.float64)


def by_name(groups):
    return {g.name: g for g in groups}


def slice_of(group, module: str, tensor: str, dim: int):
    (piece,) = [s for s in group.slices if (s.module, s.tensor, s.dim) == (module, tensor, dim)]
    return piece


def test_resnet_policies_and_residual_streams() -> None:
    model = build("resnet")
    everything = by_name(channel_groups(model, x(), "all"))
    internal = by_name(channel_groups(model, x(), "internal"))
    assert list(internal) == ["layer1.0.conv1", "layer2.0.conv1", "layer2.1.conv1"]  # BasicBlock conv1 only
    assert list(everything) == ["conv1", "layer1.0.conv1", "layer2.0.conv1", "layer2.0.conv2", "layer2.1.conv1"]
    stem = everything["conv1"]
    assert stem.producers == ("conv1", "layer1.0.conv2") and not stem.internal
    assert stem.consumers == ("layer1.0.conv1", "layer2.0.conv1", "layer2.0.shortcut.0")
    assert stem.norms == ("bn1", "layer1.0.bn2") and stem.bn == "bn1"
    stage2 = everything["layer2.0.conv2"]
    assert stage2.producers == ("layer2.0.conv2", "layer2.0.shortcut.0", "layer2.1.conv2")
    assert stage2.consumers == ("layer2.1.conv1", "fc") and stage2.size == 12
    assert everything["layer1.0.conv1"].bn == "layer1.0.bn1"
    assert "fc" not in everything  # classifier outputs never shrink


def test_concat_offsets_in_densenet() -> None:
    groups = by_name(channel_groups(build("densenet"), x()))
    assert list(groups) == ["conv0", "dense.0.conv", "dense.1.conv", "transition"]
    # norm reads cat(conv0: 0-5, dense.0.conv: 6-9, dense.1.conv: 10-13)
    for name, start in [("conv0", 0), ("dense.0.conv", 6), ("dense.1.conv", 10)]:
        piece = slice_of(groups[name], "norm", "weight", 0)
        size = groups[name].size
        assert piece.positions == tuple(range(start, start + size))
        assert piece.channels == tuple(range(size))
        assert slice_of(groups[name], "transition", "weight", 1).positions == tuple(range(start, start + size))
    assert slice_of(groups["dense.0.conv"], "dense.1.bn", "running_var", 0).positions == (6, 7, 8, 9)


def test_flatten_maps_each_channel_to_its_columns_and_macs_share() -> None:
    groups = by_name(channel_groups(build("vgg"), x()))
    assert list(groups) == ["features.0", "features.4", "features.8", "classifier.0"]
    piece = slice_of(groups["features.8"], "classifier.0", "weight", 1)
    assert piece.positions == tuple(range(40)) and piece.channels == tuple(p // 4 for p in range(40))
    # per-sample MACs at 8x8: features.0 8*64*27, features.4 12*16*72, features.8 10*4*108, fc 12*40, fc 5*12
    total = 13824 + 13824 + 4320 + 480 + 60
    assert groups["features.0"].macs_share == pytest.approx((13824 + 13824) / total)
    assert groups["classifier.0"].macs_share == pytest.approx((480 + 60) / total)


def test_depthwise_conv_joins_its_input_group() -> None:
    groups = by_name(channel_groups(build("mobilenetv2"), x()))
    expand = groups["blocks.0.conv.0"]
    assert expand.producers == ("blocks.0.conv.0", "blocks.0.conv.3") and expand.internal
    assert expand.norms == ("blocks.0.conv.1", "blocks.0.conv.4") and expand.consumers == ("blocks.0.conv.6",)
    assert not groups["stem.0"].internal  # the residual stream of block 0


def test_depthwise_means_one_channel_per_group_in_and_out() -> None:
    assert is_depthwise(nn.Conv2d(6, 6, 3, groups=6))
    assert not is_depthwise(nn.Conv2d(3, 6, 3, groups=3))  # channel multiplier 2: a grouped conv
    assert not is_depthwise(nn.Conv2d(6, 6, 3, groups=2)) and not is_depthwise(nn.Conv2d(6, 6, 3))
    assert is_plain_weight_layer(nn.Conv2d(3, 6, 3, groups=3)) and is_plain_weight_layer(nn.Linear(2, 3))
    assert not is_plain_weight_layer(nn.Conv2d(6, 6, 3, groups=6)) and not is_plain_weight_layer(nn.BatchNorm2d(2))


def test_tracing_keeps_each_module_mode_and_requires_grad() -> None:
    model = build("mobilenetv2")
    model.train()
    frozen = model.get_submodule("blocks.0.conv.1")
    frozen.eval()  # a BatchNorm frozen in eval mode inside a training model
    frozen.weight.requires_grad_(False)
    groups = by_name(channel_groups(model, x()))
    assert model.training and not frozen.training
    assert all(m.training for m in model.modules() if m is not frozen)
    assert not frozen.weight.requires_grad
    expand = groups["blocks.0.conv.0"]
    assert expand.bn == "blocks.0.conv.1" and expand.norm_layers == ("blocks.0.conv.1", "blocks.0.conv.4")


def test_grouped_convolution_channels_shrink_together_in_every_conv_group() -> None:
    # features.0 (8 channels) feeds the grouped conv features.3 (groups=2: input columns 0-3 | 4-7, 12 outputs
    # in two conv groups of 6); a group channel is one index within a conv group, so both conv groups keep the
    # same width
    groups = by_name(channel_groups(build("grouped"), x()))
    assert list(groups) == ["features.0", "features.3", "features.6", "features.9"]
    feeding, grouped = groups["features.0"], groups["features.3"]
    assert feeding.size == 4 and grouped.size == 6
    rows = slice_of(feeding, "features.0", "weight", 0)
    assert rows.positions == tuple(range(8)) and rows.channels == (0, 1, 2, 3, 0, 1, 2, 3)
    columns = slice_of(feeding, "features.3", "weight", 1)  # the grouped conv's weight has 8 / 2 = 4 columns
    assert columns.positions == (0, 1, 2, 3) and columns.channels == (0, 1, 2, 3)
    out_rows = slice_of(grouped, "features.3", "weight", 0)
    assert out_rows.positions == tuple(range(12)) and out_rows.channels == tuple(r % 6 for r in range(12))


class PaddedShortcutNet(nn.Module):
    """Option-A shortcut: the stream is zero-padded along channels, which no group can express."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv3, self.bn3 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 2)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        stream = torch.relu(self.bn1(self.conv1(inputs)))
        branch = self.bn3(self.conv3(torch.relu(self.bn2(self.conv2(stream)))))
        out = torch.relu(branch + nn.functional.pad(stream, (0, 0, 0, 0, 2, 2)))
        return self.fc(out.mean(dim=(2, 3)))


class InputResidualNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 3, 3, padding=1)
        self.fc = nn.Linear(3, 2)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.fc((inputs + self.conv2(torch.relu(self.conv1(inputs)))).mean(dim=(2, 3)))


def test_channel_padding_and_input_residual_block_their_groups() -> None:
    assert [g.name for g in channel_groups(PaddedShortcutNet().double(), x())] == ["conv2"]
    assert [g.name for g in channel_groups(InputResidualNet().double(), x())] == ["conv1"]


def test_unsupported_layer_and_policy_errors() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.LazyLinear(2))
    model(x().float())
    with pytest.raises(UserError, match=r"'1' \(GroupNorm\)"):
        channel_groups(model.double(), x())
    with pytest.raises(UserError, match="unknown channel policy"):
        channel_groups(build("vgg"), x(), "some")


def test_per_channel_parameter_of_a_custom_module_is_sliced_with_its_channels() -> None:
    (group,) = [g for g in channel_groups(CustomLayerNet().double(), x()) if g.name == "conv1"]
    piece = slice_of(group, "scale", "scale", 0)
    assert piece.positions == tuple(range(8)) and piece.channels == tuple(range(8))


def test_registry_resnet20_policies() -> None:
    models = pytest.importorskip("prunekit.models")
    model = models.create_model("resnet20")
    example = torch.randn(1, 3, 16, 16)
    internal = [g.name for g in channel_groups(model, example, "internal")]
    assert internal == [f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)]
    streams = [g.name for g in channel_groups(model, example, "all") if not g.internal]
    assert streams == ["conv1", "layer2.0.conv2", "layer3.0.conv2"]
