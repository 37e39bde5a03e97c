"""Tiny test models covering the channel-group topologies: residual streams with identity and projection
shortcuts, bottlenecks, flatten into Linear, depthwise inverted residuals, DenseNet concatenation with BN after the
concat, grouped convolution, and a custom layer with a parameter (unsupported)."""

from __future__ import annotations

from collections.abc import Callable

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


# --- structures from issue 16: each is small; the tests compare the compacted model with a masked reference ---


class ResNeXtBlock(nn.Module):
    """Bottleneck whose 3x3 conv is grouped (cardinality 4, width 2 per group), identity shortcut."""

    def __init__(self, channels: int = 8, groups: int = 4, width: int = 2) -> None:
        super().__init__()
        mid = groups * width
        self.conv1, self.bn1 = conv_bn(channels, mid, 1)
        self.conv2, self.bn2 = conv_bn(mid, mid, 3, groups=groups)
        self.conv3, self.bn3 = conv_bn(mid, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return torch.relu(x + self.bn3(self.conv3(out)))


class TinyResNeXt(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(3, 8)
        self.layer = nn.Sequential(ResNeXtBlock(), ResNeXtBlock())
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


def shuffle_view_transpose(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


def shuffle_permute(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).permute(0, 2, 1, 3, 4).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit (stride 1): split in halves, a branch on the second half, concat, channel shuffle."""

    def __init__(self, channels: int, style: str) -> None:
        super().__init__()
        half = channels // 2
        self.style = style
        self.branch = nn.Sequential(*conv_bn(half, half, 1), nn.ReLU(),
                                    nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False), nn.BatchNorm2d(half),
                                    *conv_bn(half, half, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.style == "chunk":
            x1, x2 = x.chunk(2, dim=1)
        else:
            half = x.shape[1] // 2
            x1, x2 = x[:, :half], x[:, half:]
        out = torch.cat((x1, self.branch(x2)), dim=1)
        if self.style == "chunk":
            return shuffle_view_transpose(out, 2)
        return shuffle_permute(out, 2)


class TinyShuffleNet(nn.Module):
    """Stem, a stride-2 unit (both branches convolve), two stride-1 units with shuffles, 1x1 head."""

    def __init__(self, num_classes: int = 5, style: str = "chunk") -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 8), nn.ReLU())
        self.down1 = nn.Sequential(nn.Conv2d(8, 8, 3, 2, 1, groups=8, bias=False), nn.BatchNorm2d(8),
                                   *conv_bn(8, 4, 1), nn.ReLU())
        self.down2 = nn.Sequential(*conv_bn(8, 4, 1), nn.ReLU(),
                                   nn.Conv2d(4, 4, 3, 2, 1, groups=4, bias=False), nn.BatchNorm2d(4),
                                   *conv_bn(4, 4, 1), nn.ReLU())
        self.units = nn.Sequential(ShuffleUnit(8, style), ShuffleUnit(8, style))
        self.head = nn.Sequential(*conv_bn(8, 12, 1), nn.ReLU())
        self.fc = nn.Linear(12, num_classes)
        self.style = style

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat((self.down1(x), self.down2(x)), dim=1)
        x = shuffle_view_transpose(x, 2) if self.style == "chunk" else shuffle_permute(x, 2)
        return self.fc(self.head(self.units(x)).mean(dim=(2, 3)))


class TinyShufflePermute(TinyShuffleNet):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__(num_classes, style="slice")


class CheckpointedDenseLayer(nn.Module):
    """torchvision's memory-efficient DenseNet layer: cat + BN + ReLU + 1x1 conv under torch.utils.checkpoint."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, 2 * growth, 1, bias=False)
        self.norm2, self.conv2 = nn.BatchNorm2d(2 * growth), nn.Conv2d(2 * growth, growth, 3, 1, 1, bias=False)

    def bottleneck(self, *features: torch.Tensor) -> torch.Tensor:
        return self.conv1(torch.relu(self.norm1(torch.cat(features, 1))))

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        import torch.utils.checkpoint as cp

        if any(f.requires_grad for f in features):
            out = cp.checkpoint(self.bottleneck, *features, use_reentrant=True)
        else:
            out = self.bottleneck(*features)
        return self.conv2(torch.relu(self.norm2(out)))


class TinyCheckpointDenseNet(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 6, 3, 1, 1, bias=False)
        self.layers = nn.ModuleList([CheckpointedDenseLayer(6, 4), CheckpointedDenseLayer(10, 4)])
        self.norm = nn.BatchNorm2d(14)
        self.fc = nn.Linear(14, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.conv0(x)]
        for layer in self.layers:
            features.append(layer(*features))
        x = torch.relu(self.norm(torch.cat(features, 1)))
        return self.fc(x.mean(dim=(2, 3)))


class LayerNorm2d(nn.LayerNorm):
    """torchvision's LayerNorm2d: LayerNorm over channels of an NCHW tensor (permute, layer_norm, permute)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7 (here 3x3), channels-last LayerNorm, MLP, per-channel layer scale."""

    def __init__(self, dim: int, layer_scale: float = 0.5) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.pwconv2(nn.functional.gelu(self.pwconv1(y))).permute(0, 3, 1, 2)
        return x + self.layer_scale * y


class TinyConvNeXt(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 2, 2), LayerNorm2d(8, eps=1e-6))
        self.stage1 = nn.Sequential(CNBlock(8), CNBlock(8))
        self.down = nn.Sequential(LayerNorm2d(8, eps=1e-6), nn.Conv2d(8, 12, 2, 2))
        self.stage2 = nn.Sequential(CNBlock(12))
        self.head_norm = nn.LayerNorm(12)
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.fc(self.head_norm(x.mean(dim=(2, 3))))


class _ChannelMixTail(nn.Module):
    """conv-BN-ReLU, then `mix` (a subclass hook), then a 1x1 conv and a classifier."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(3, 8)
        self.conv2, self.bn2 = conv_bn(8, 8)
        self.conv3 = nn.Conv2d(8, 6, 1)
        self.fc = nn.Linear(6, num_classes)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.mix(torch.relu(self.bn2(self.conv2(x))))
        return self.fc(torch.relu(self.conv3(x)).mean(dim=(2, 3)))


class SoftmaxNet(_ChannelMixTail):
    def mix(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=1)


class MeanCenterNet(_ChannelMixTail):
    def mix(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(1, keepdim=True)


class ShiftChannels(torch.autograd.Function):
    """A custom op that moves every channel to the next index (a name that says nothing about rolling)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, 1, dims=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return torch.roll(grad, -1, dims=1)


class ShiftNet(_ChannelMixTail):
    def mix(self, x: torch.Tensor) -> torch.Tensor:
        return ShiftChannels.apply(x)


class GLUNet(_ChannelMixTail):
    """GLU built from chunk: the first half of the channels gated by the second half."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__(num_classes)
        self.conv3 = nn.Conv2d(4, 6, 1)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * torch.sigmoid(b)


class FixedViewNet(nn.Module):
    """flatten, then a view with hard-coded sizes that regroups the flattened channels."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(3, 8)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(16, 6)
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(torch.relu(self.bn1(self.conv1(x)))), 1)  # 8 channels x 4 positions
        x = self.fc1(x.view(x.shape[0], 2, 16))  # two rows of 16: channels 0-3 and 4-7
        return self.fc(torch.relu(x).flatten(1))


STRUCTURES = {
    "resnext": TinyResNeXt,
    "shuffle_view": TinyShuffleNet,
    "shuffle_permute": TinyShufflePermute,
    "checkpoint_dense": TinyCheckpointDenseNet,
    "convnext": TinyConvNeXt,
    "softmax": SoftmaxNet,
    "mean_center": MeanCenterNet,
    "shift_op": ShiftNet,
    "glu_chunk": GLUNet,
    "fixed_view": FixedViewNet,
}


def build_structure(name: str, seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A STRUCTURES model with random weights and random BN statistics (as `build`)."""
    torch.manual_seed(seed)
    model = STRUCTURES[name]().to(dtype)
    randomize_batchnorm(model, seed)
    return model


def softmax_channels(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=1)


class MixOnly(nn.Module):
    """conv-BN-ReLU, a channel-mixing op, a classifier: the conv's group is the only one and it is blocked."""

    def __init__(self, mix: Callable[[torch.Tensor], torch.Tensor] | None = None, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(3, 8)
        self.mix = mix if mix is not None else softmax_channels
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.mix(torch.relu(self.bn1(self.conv1(x)))).mean(dim=(2, 3)))


# --- user factories ("zoo:<function>", the zoo is on sys.path in tests) for the Trainer's model.name ---


def _factory(name: str):
    def factory(num_classes: int = 5, in_channels: int = 3) -> nn.Module:
        if in_channels != 3:
            raise ValueError(f"the zoo's {name} takes 3 input channels, not {in_channels}")
        return STRUCTURES[name](num_classes=num_classes)

    factory.__name__ = factory.__qualname__ = f"{name}_net"
    factory.default_input_shape = INPUT_SHAPE  # type: ignore[attr-defined]
    return factory


resnext_net = _factory("resnext")
convnext_net = _factory("convnext")
shuffle_view_net = _factory("shuffle_view")


def softmax_only_net(num_classes: int = 5, in_channels: int = 3) -> nn.Module:
    """MixOnly with softmax over channels: no prunable group at all."""
    if in_channels != 3:
        raise ValueError(f"softmax_only_net takes 3 input channels, not {in_channels}")
    return MixOnly(num_classes=num_classes)
