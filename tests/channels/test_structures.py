"""Issue 16's structures (tests/channels/zoo.py STRUCTURES): every group returned is exact against the
independent masked reference in float64, MACs estimates equal measured MACs, channel-mixing ops block their
groups with the op named, and the analysis is bounded in time."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from masked_reference import install_masks
from zoo import INPUT_SHAPE, build, build_structure

from prunekit.channels import (
    ChannelGroup,
    ChannelPlan,
    ChannelSlice,
    channel_groups,
    check_plan_matches,
    macs_estimator,
    materialize,
    plan_macs,
    require_prunable,
)
from prunekit.channels.groups import analyse
from prunekit.errors import UserError

# name -> groups that must be found prunable (hand-checked); the numerical check may not remove any of them
EXPECTED = {
    "resnext": {"conv1", "layer.0.conv1", "layer.0.conv2", "layer.1.conv1", "layer.1.conv2"},
    "checkpoint_dense": {"conv0", "layers.0.conv1", "layers.0.conv2", "layers.1.conv1", "layers.1.conv2"},
    "convnext": {"stem.0", "stage1.0.pwconv1", "stage1.1.pwconv1", "down.1", "stage2.0.pwconv1"},
    "glu_chunk": {"conv1", "conv2", "conv3"},
    "softmax": {"conv1", "conv3"},
    "mean_center": {"conv1", "conv3"},
    "shift_op": {"conv1", "conv3"},
    "shuffle_view": {"stem.0", "down2.0", "units.0.branch.0", "units.1.branch.0", "head.0"},
    "shuffle_permute": {"stem.0", "down2.0", "units.0.branch.0", "units.1.branch.0", "head.0"},
}


def inputs(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, *INPUT_SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def random_plan(groups, seed: int) -> ChannelPlan:
    generator = torch.Generator().manual_seed(seed)
    keep = {}
    for group in groups:
        count = int(torch.randint(1, group.size, (1,), generator=generator)) if group.size > 1 else 1
        keep[group.name] = sorted(torch.randperm(group.size, generator=generator)[:count].tolist())
    return ChannelPlan(keep)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_groups_are_exact_against_the_masked_reference_and_macs(name: str) -> None:
    model = build_structure(name).eval()
    groups = channel_groups(model, inputs(1, 0))
    assert {g.name for g in groups} == EXPECTED[name]
    for seed in (0, 1):
        plan = random_plan(groups, seed)
        subnet = materialize(model, plan, groups)
        reference = copy.deepcopy(model)
        install_masks(reference, groups, plan, inputs(16, 99))
        x = inputs(3, seed + 5)
        with torch.no_grad():
            assert (subnet(x) - reference(x)).abs().max().item() < 1e-9
        assert macs_estimator(model, groups, inputs(1, 0))(plan) == plan_macs(model, plan, groups, inputs(1, 0))
        assert plan_macs(model, plan, groups, inputs(1, 0)) < plan_macs(model, ChannelPlan(), groups, inputs(1, 0))


@pytest.mark.parametrize("name,reason", [
    ("softmax", "SoftmaxBackward0 acts across the channel dim"),
    ("mean_center", "MeanBackward1 acts across the channel dim"),
    ("shift_op", "custom autograd function ShiftChannelsBackward"),
])
def test_channel_mixing_ops_block_their_group_by_what_they_do(name: str, reason: str) -> None:
    rows = {a.group.name: a.blocked for a in analyse(build_structure(name), inputs(1, 0)).groups}
    assert rows["conv2"] is not None and rows["conv2"].startswith(reason)


class Smooth(torch.autograd.Function):
    """A channel roll under a harmless-sounding name: blocked because it is a custom autograd function."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, 1, dims=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return torch.roll(grad, -1, dims=1)


def test_renamed_channel_mixing_op_is_blocked_too() -> None:
    model = build_structure("shift_op")
    model.mix = Smooth.apply  # the instance's mix now calls the renamed op
    rows = {a.group.name: a.blocked for a in analyse(model, inputs(1, 0)).groups}
    assert rows["conv2"].startswith("custom autograd function SmoothBackward")


def test_fixed_view_across_channels_blocks_every_group_it_touches() -> None:
    rows = {a.group.name: a.blocked for a in analyse(build_structure("fixed_view"), inputs(1, 0)).groups}
    assert rows["conv1"] is not None and rows["fc1"] is not None


def test_grouped_conv_keeps_equal_widths_per_conv_group() -> None:
    model = build_structure("resnext").eval()
    groups = channel_groups(model, inputs(1, 0))
    subnet = materialize(model, ChannelPlan({"layer.0.conv1": [1], "layer.0.conv2": [0]}), groups)
    conv2 = subnet.layer[0].conv2
    assert conv2.groups == 4 and conv2.in_channels == 4 and conv2.out_channels == 4
    assert tuple(conv2.weight.shape) == (4, 1, 3, 3)


def test_analysis_past_its_time_limit_stops_with_one_line_error() -> None:
    start = time.monotonic()
    with pytest.raises(UserError, match=r"channel analysis stopped after 1e-06 s \(the limit\) while "):
        channel_groups(build("resnet"), inputs(1, 0), time_limit=1e-6)
    assert time.monotonic() - start < 5.0


def test_check_plan_matches_accepts_a_right_plan_and_refuses_a_wrong_group() -> None:
    model = build("vgg").eval()
    groups = channel_groups(model, inputs(1, 0))
    plan = ChannelPlan({"features.4": [0, 3, 7]})
    assert check_plan_matches(model, groups, plan, inputs(2, 0)) < 1e-10
    good = {g.name: g for g in groups}["features.4"]
    # the same group with its consumer columns shifted by one: runs, but computes something else
    shifted = tuple(ChannelSlice(s.module, s.tensor, s.dim, s.positions, tuple((c + 1) % good.size for c in
                                                                                s.channels))
                    if (s.module, s.dim) == ("features.8", 1) else s for s in good.slices)
    wrong = ChannelGroup(**{**good.__dict__, "slices": shifted})
    with pytest.raises(UserError, match="channel plan refused: it differs from the masked supernet"):
        check_plan_matches(model, [wrong], plan, inputs(2, 0))


def test_require_prunable_names_the_policy() -> None:
    with pytest.raises(UserError, match=r"under channel policy 'internal'; `policy: all`.*prunekit inspect"):
        require_prunable([], "internal", who="reprune")
    require_prunable(channel_groups(build("vgg"), inputs(1, 0)), "all")
