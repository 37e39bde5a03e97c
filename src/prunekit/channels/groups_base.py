"""The plain data of channel groups (`ChannelSlice`, `ChannelGroup`) and the module predicates they rest on."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn
from torch.nn.modules.conv import _ConvNd

POLICIES = ("internal", "all")


@dataclass(frozen=True)
class ChannelSlice:
    """The positions of `module.tensor` along `dim` that carry this group's channels.

    `positions[i]` carries group channel `channels[i]` (several positions per channel after a flatten, or for
    the channels of a grouped convolution, which go together in every conv group; positions offset by the
    concatenation offset when the group is concatenated with others).
    """

    module: str
    tensor: str
    dim: int
    positions: tuple[int, ...]
    channels: tuple[int, ...]


@dataclass(frozen=True)
class ChannelGroup:
    """One prunable channel index space (see `groups.py`).

    name: the first producer in `model.named_modules()` order. producers: modules whose output channels are this
    group (convs, linears and depthwise convs that carry the group through). consumers: modules whose input channels
    read it. norms: BatchNorms / LayerNorms on it. bn: the BatchNorm directly after the first producer (its gamma
    is the BN scale criterion), or None. internal: exactly one non-depthwise producer (so not a residual stream;
    REPrune's rule). macs_share: the dense MACs of the producers and consumers divided by the model's conv+linear
    MACs, i.e. the share of the model's MACs whose cost scales with this group's width (an upper bound on what
    pruning it saves).
    """

    name: str
    size: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    norms: tuple[str, ...]
    bn: str | None
    internal: bool
    macs_share: float
    slices: tuple[ChannelSlice, ...] = field(repr=False, default=())

    @property
    def norm_layers(self) -> tuple[str, ...]:
        """The norms on the group: `bn` (the one after the first producer) first, then the others."""
        first = (self.bn,) if self.bn is not None else ()
        return first + tuple(n for n in self.norms if n != self.bn)


@dataclass
class GroupAnalysis:
    """A traced group with the reason it cannot be pruned (None when it can)."""

    group: ChannelGroup
    blocked: str | None


def is_depthwise(conv: _ConvNd) -> bool:
    """A depthwise conv: every channel is its own group and maps to itself (groups == in == out > 1).

    A channel-multiplier conv (groups == in_channels, out_channels = k * in_channels, k > 1) is NOT depthwise
    here: it is a grouped conv (its channels shrink together in every conv group)."""
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def is_grouped(module: nn.Module) -> bool:
    """A grouped convolution that is not depthwise (ResNeXt, RegNet): its conv groups keep equal widths."""
    return isinstance(module, _ConvNd) and module.groups > 1 and not is_depthwise(module)


def is_plain_weight_layer(module: nn.Module) -> bool:
    """A Conv (not depthwise) or a Linear: the layers whose weights define what a channel reads and writes.

    Depthwise convs only carry each channel through; per-channel criteria (filter norms, sparsity) skip them."""
    if isinstance(module, _ConvNd):
        return not is_depthwise(module)
    return isinstance(module, nn.Linear)
