"""MACs of a plan: the analytic estimator against the measured MACs of the materialized subnet (random plans on
a residual stream, a depthwise conv with a flatten into a Linear, and a CIFAR ResNet), and against a hand count."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from zoo import TwoWriterNet

from prunekit.channels import ChannelPlan, channel_groups, macs_estimator, plan_macs
from prunekit.models import create_model


def depthwise_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 5, 1), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 64, 3))


def random_plan(groups, generator: torch.Generator) -> ChannelPlan:
    keep = {}
    for g in groups:
        count = int(torch.randint(1, g.size + 1, (1,), generator=generator))
        keep[g.name] = sorted(torch.randperm(g.size, generator=generator)[:count].tolist())
    return ChannelPlan(keep)


@pytest.mark.parametrize("policy", ["internal", "all"])
def test_estimate_equals_the_measured_macs_of_random_plans(policy):
    torch.manual_seed(0)
    cases = [(TwoWriterNet(), torch.zeros(2, 3, 8, 8)), (depthwise_net(), torch.zeros(2, 3, 8, 8)),
             (create_model("resnet20", num_classes=10, in_channels=3), torch.zeros(2, 3, 16, 16))]
    generator = torch.Generator().manual_seed(4)
    for net, example in cases:
        groups = channel_groups(net, example, policy=policy)
        estimate = macs_estimator(net, groups, example)
        assert estimate(ChannelPlan()) == plan_macs(net, ChannelPlan(), groups, example)
        for _ in range(2):
            plan = random_plan(groups, generator)
            macs = estimate(plan)
            assert isinstance(macs, int) and macs == plan_macs(net, plan, groups, example)


def test_estimate_matches_a_hand_count():
    torch.manual_seed(0)
    net = create_model("small_cnn", num_classes=10, in_channels=1)
    example = torch.zeros(2, 1, 8, 8)
    groups = channel_groups(net, example)
    plan = ChannelPlan({"features.conv1": list(range(10)), "features.conv2": list(range(0, 32, 2)),
                        "features.conv3": [1, 5, 7]})
    # conv1 1->10 at 8x8, conv2 10->16 at 4x4, conv3 16->3 at 2x2 (3x3 kernels), fc 3->10
    assert macs_estimator(net, groups, example)(plan) == 10 * 9 * 64 + 16 * 10 * 9 * 16 + 3 * 16 * 9 * 4 + 3 * 10
