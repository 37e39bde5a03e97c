"""CIFAR ResNets (He et al. 2016, "Deep Residual Learning", Sec. 4.2): ResNet-20/32/44/56/110.

Depth 6n+2: a 3x3 stem with 16 channels, three stages of n BasicBlocks with 16/32/64 channels at 32x32/16x16/8x8,
global average pooling and a linear classifier `fc`. Where a block changes shape, the shortcut is a 1x1 conv + BN
projection ("option B"; the paper's CIFAR experiments use option A, zero padding, which has no parameters). With
option B, ResNet-20 has 0.272M parameters and 41.0M MACs per 32x32 image, ResNet-56 0.858M and 126.8M.
"""

from __future__ import annotations

import torch
from torch import nn

from prunekit.models.init import init_weights
from prunekit.models.registry import register_model


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU. `shortcut` is empty (identity) or conv1x1 + BN."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.shortcut(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu2(out)


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs with `blocks_per_stage` BasicBlocks per stage (depth = 6 * blocks_per_stage + 2)."""

    def __init__(
        self,
        blocks_per_stage: int,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: tuple[int, int, int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        channels = widths[0]
        stages = []
        for stage_index, width in enumerate(widths):
            stride = 1 if stage_index == 0 else 2
            blocks = []
            for block_index in range(blocks_per_stage):
                blocks.append(BasicBlock(channels, width, stride if block_index == 0 else 1))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _factory(depth: int):
    if (depth - 2) % 6 != 0:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")

    def build(num_classes: int = 10, in_channels: int = 3, widths: tuple[int, int, int] = (16, 32, 64)) -> nn.Module:
        return CifarResNet((depth - 2) // 6, num_classes, in_channels, tuple(widths))  # type: ignore[arg-type]

    build.__name__ = f"resnet{depth}"
    build.__doc__ = f"CIFAR ResNet-{depth} (BasicBlock, option-B projection shortcuts)."
    return build


for _depth in (20, 32, 44, 56, 110):
    register_model(f"resnet{_depth}", (3, 32, 32))(_factory(_depth))
