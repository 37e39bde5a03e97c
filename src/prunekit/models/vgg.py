"""VGG-11/13/16/19 with batch norm for 32x32 inputs (Simonyan & Zisserman 2015, configurations A/B/D/E).

CIFAR variant: the conv stack of the paper (3x3 conv-BN-ReLU, five 2x2 max pools, widths 64..512), then global
average pooling (a no-op at 32x32 input, where the map is already 1x1; it lets other input sizes work), flatten and
ONE linear layer 512 -> num_classes as the classifier (no 4096-wide hidden layers; the common CIFAR choice, e.g. in
the Network Slimming and Lottery Ticket experiments' VGG-16/19). Module names follow torchvision: `features.<i>`
(conv, bn, relu, ..., maxpool), `classifier`. VGG-16 has 14.73M params and 313M MACs per 32x32 image.
"""

from __future__ import annotations

import torch
from torch import nn

from prunekit.models.init import init_weights
from prunekit.models.registry import register_model

# Widths of the 3x3 convs; "M" is a 2x2 max pool.
CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, config: list[int | str], num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                width = int(item)
                layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def _factory(name: str):
    def build(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        return VGG(CONFIGS[name], num_classes, in_channels)

    build.__name__ = name
    build.__doc__ = f"{name.upper()} with batch norm for 32x32 inputs; classifier: one Linear(512, num_classes)."
    return build


for _name in CONFIGS:
    register_model(_name, (3, 32, 32))(_factory(_name))
