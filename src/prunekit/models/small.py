"""Small models for 28x28 (MNIST-like) and 8x8 (scikit-learn digits) inputs: LeNet-5, an MLP, a small CNN."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from prunekit.errors import UserError
from prunekit.models.init import init_weights
from prunekit.models.registry import register_model


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling: conv5x5(6, pad 2)-pool-conv5x5(16)-pool-120-84-C.

    At 28x28 this is the classic layout (16x5x5 = 400 features into fc1). `input_size` is the side of the square
    input; the flatten size is computed from it. Below 12 pixels the second conv is padded too (padding 2) so the
    map does not vanish: at 8x8 the feature map before fc1 is 16x2x2.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> None:
        super().__init__()
        conv2_padding = 0 if input_size >= 12 else 2
        side = input_size // 2  # conv1 keeps the size (padding 2), then 2x2 pooling
        side = (side - 4 + 2 * conv2_padding) // 2
        if side < 1:
            raise UserError(f"lenet5 needs input_size >= 4, got {input_size}")
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5, padding=conv2_padding)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.relu4(self.fc2(self.relu3(self.fc1(x))))
        return self.fc3(x)


class MLP(nn.Module):
    """Fully connected ReLU network; the default hidden widths (300, 100) are LeNet-300-100.

    The input (in_channels x input_size x input_size) is flattened; `layers` holds Linear/ReLU pairs, `fc` is the
    classifier.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 28,
        hidden: tuple[int, ...] = (300, 100),
    ) -> None:
        super().__init__()
        features = in_channels * input_size * input_size
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(features, width), nn.ReLU()]
            features = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(torch.flatten(x, 1)))


class SmallCNN(nn.Module):
    """A few conv3x3-BN-ReLU layers (`features.conv1`, `features.bn1`, ...), global average pooling, `fc`.

    The first conv has stride 1, the others stride 2: 8x8 -> 8, 4, 2 and 32x32 -> 32, 16, 8 for three layers.
    Works for any input of at least 4x4 (adaptive pooling).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for index, width in enumerate(widths, start=1):
            stride = 1 if index == 1 else 2
            layers[f"conv{index}"] = nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False)
            layers[f"bn{index}"] = nn.BatchNorm2d(width)
            layers[f"relu{index}"] = nn.ReLU()
            channels = width
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model("lenet5", (1, 28, 28))
def lenet5(num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> nn.Module:
    """LeNet-5 for square inputs of side `input_size` (28 by default; 8 for scikit-learn digits)."""
    return LeNet5(num_classes, in_channels, input_size)


@register_model("mlp", (1, 28, 28))
def mlp(
    num_classes: int = 10, in_channels: int = 1, input_size: int = 28, hidden: tuple[int, ...] = (300, 100)
) -> nn.Module:
    """LeNet-300-100 style MLP for square inputs of side `input_size`."""
    return MLP(num_classes, in_channels, input_size, tuple(hidden))


@register_model("small_cnn", (1, 8, 8))
def small_cnn(num_classes: int = 10, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64)) -> nn.Module:
    """Small conv-BN-ReLU network for 8x8..32x32 inputs (channel counts multiples of 8)."""
    return SmallCNN(num_classes, in_channels, tuple(widths))
