"""MobileNetV2 (Sandler et al. 2018, Table 2) for 32x32 inputs.

CIFAR variant: the stem conv has stride 1 (not 2) and so does the first stride-2 stage (24 channels), so the
feature maps go 32 -> 32 -> 16 -> 8 -> 4 instead of 224 -> 7. Everything else follows the paper: inverted residual
blocks (1x1 expand x t, 3x3 depthwise, 1x1 linear projection; the residual only where stride is 1 and the width
is unchanged), ReLU6, a final 1x1 conv to 1280 channels, global average pooling, `classifier` = Dropout + Linear.
Module names follow torchvision: `features.<i>`, `features.<i>.conv.<j>`, `classifier.1`.
"""

from __future__ import annotations

import torch
from torch import nn

from prunekit.models.init import init_weights
from prunekit.models.registry import register_model

# (expansion t, output channels c, repeats n, stride s) per stage; Table 2 with the CIFAR stride change.
CIFAR_STAGES: list[tuple[int, int, int, int]] = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),  # stride 2 on ImageNet
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled width to a multiple of `divisor`, never dropping more than 10% (as in the reference code)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNReLU6(nn.Sequential):
    """conv (no bias) - BN - ReLU6, as a Sequential named 0/1/2 like torchvision's Conv2dNormActivation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNReLU6(in_channels, hidden, 1))
        layers += [
            ConvBNReLU6(hidden, hidden, 3, stride=stride, groups=hidden),  # depthwise
            nn.Conv2d(hidden, out_channels, 1, bias=False),  # linear bottleneck: no activation
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:  # fixed at construction, not data-dependent: traceable by torch.fx
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.2
    ) -> None:
        super().__init__()
        channels = _make_divisible(32 * width_mult)
        last_channels = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU6(in_channels, channels, 3, stride=1)]
        for expansion, width, repeats, stride in CIFAR_STAGES:
            out_channels = _make_divisible(width * width_mult)
            for index in range(repeats):
                features.append(InvertedResidual(channels, out_channels, stride if index == 0 else 1, expansion))
                channels = out_channels
        features.append(ConvBNReLU6(channels, last_channels, 1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channels, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


@register_model("mobilenetv2", (3, 32, 32))
def mobilenetv2(
    num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.2
) -> nn.Module:
    """MobileNetV2 for 32x32 inputs (stride 1 in the stem and the 24-channel stage)."""
    return MobileNetV2(num_classes, in_channels, width_mult, dropout)
