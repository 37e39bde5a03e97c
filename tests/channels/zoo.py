"""Tiny test models covering the channel-group topologies: residual streams with identity and projection
shortcuts, bottlenecks, flatten into Linear, depthwise inverted residuals, DenseNet concatenation with BN after the
concat, grouped convolution, and a custom layer with a parameter (unsupported)."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, cout, 3, stride)
        self.conv2, self.bn2 = conv_bn(cout, cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """Stem, an identity BasicBlock, a projection BasicBlock (stride 2), a second identity block, fc."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(3, 8)
        self.layer1 = nn.Sequential(BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 12, 2), BasicBlock(12, 12))
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(x.mean(dim=(2, 3)))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, mid, 1)
        self.conv2, self.bn2 = conv_bn(mid, mid, 3, stride)
        self.conv3, self.bn3 = conv_bn(mid, cout, 1)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return torch.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class BottleneckNet(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(3, 8)
        self.layer1 = nn.Sequential(Bottleneck(8, 4, 16, 2), Bottleneck(16, 6, 16))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class TinyVGG(nn.Module):
    """Three conv-BN-ReLU layers with max pooling to 2x2, flatten (4 columns per channel), Linear-ReLU-Linear."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn(3, 8), nn.ReLU(), nn.MaxPool2d(2),
            *conv_bn(8, 12), nn.ReLU(), nn.MaxPool2d(2),
            *conv_bn(12, 10), nn.ReLU(),
        )
        self.classifier = nn.Sequential(nn.Linear(10 * 4, 12), nn.ReLU(), nn.Linear(12, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            *conv_bn(cin, hidden, 1), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=True), nn.BatchNorm2d(hidden), nn.ReLU6(),
            *conv_bn(hidden, cout, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class TinyMobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 8), nn.ReLU6())
        self.blocks = nn.Sequential(InvertedResidual(8, 8, 1, 2), InvertedResidual(8, 12, 2, 2),
                                    InvertedResidual(12, 12, 1, 2))
        self.head = nn.Sequential(*conv_bn(12, 16, 1), nn.ReLU6())
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(x.mean(dim=(2, 3)))


class DenseLayer(nn.Module):
    """Pre-activation BN-ReLU-conv; its BN reads a concatenation (channel offsets)."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(torch.relu(self.bn(x)))], dim=1)


class TinyDenseNet(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 6, 3, 1, 1, bias=False)
        self.dense = nn.Sequential(DenseLayer(6, 4), DenseLayer(10, 4))
        self.norm = nn.BatchNorm2d(14)
        self.transition = nn.Conv2d(14, 8, 1, bias=True)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.transition(torch.relu(self.norm(self.dense(self.conv0(x)))))
        return self.fc(torch.relu(x).mean(dim=(2, 3)))


class GroupedNet(nn.Module):
    """A grouped convolution (groups=2) between two ordinary ones: the groups it touches cannot shrink."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn(3, 8), nn.ReLU(),
            *conv_bn(8, 12, groups=2), nn.ReLU(),
            *conv_bn(12, 10), nn.ReLU(),
            *conv_bn(10, 6), nn.ReLU(),
        )
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class ChannelScale(nn.Module):
    """A custom per-channel scale: owns a parameter the channel engine does not know how to slice."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.view(1, -1, 1, 1)


class CustomLayerNet(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(3, 8)
        self.scale = ChannelScale(8)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.scale(torch.relu(self.bn1(self.conv1(x)))).mean(dim=(2, 3)))


class TwoWriterNet(nn.Module):
    """stem and block write one residual stream (policy "all" prunes it as one group)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.block, self.block_bn = nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem_bn(self.stem(x)))
        x = torch.relu(x + self.block_bn(self.block(x)))
        return self.fc(x.mean(dim=(2, 3)))


ZOO = {
    "resnet": TinyResNet,
    "bottleneck": BottleneckNet,
    "vgg": TinyVGG,
    "mobilenetv2": TinyMobileNetV2,
    "densenet": TinyDenseNet,
    "grouped": GroupedNet,
}
INPUT_SHAPE = (3, 8, 8)


def build(name: str, seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A zoo model with random weights and random BN statistics/affine parameters (so BN is not the identity)."""
    torch.manual_seed(seed)
    model = ZOO[name]().to(dtype)
    randomize_batchnorm(model, seed)
    return model


def randomize_batchnorm(model: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                dtype = module.weight.dtype
                module.weight.copy_(0.5 + torch.rand(n, generator=generator, dtype=dtype))
                module.bias.copy_(0.2 * torch.randn(n, generator=generator, dtype=dtype))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator, dtype=dtype))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator, dtype=dtype))
                module.num_batches_tracked.fill_(3)
