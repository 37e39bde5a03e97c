"""channels_last for a model, with a guard for a oneDNN crash on some CPUs.

torch 2.13.0+cpu crashes the process (glibc heap corruption or a segfault, exit 134/139) in the backward pass of
a 1x1 convolution with stride > 1 and fewer than 8 input channels when input and weight are channels_last, on an
AMD EPYC (Zen 1, AVX2) CPU; the same layer runs on AVX-512 CPUs, without channels_last, and with 8 or more input
channels (measured 2026-12-02, benchmarks/RESULTS.md section 14). A pruned ResNet whose stream before a stride-2
projection shortcut is cut under 8 channels (HRank at rate 0.6 keeps 7 of 16) has exactly that layer. Such
layers on the CPU here keep the default (NCHW) layout: their weight stays contiguous and a forward pre-hook makes their
input contiguous, so the rest of the network still runs channels_last.
"""

from __future__ import annotations

import torch
from torch import nn

# The narrowest input width that runs; below it the layer above crashes.
SAFE_IN_CHANNELS = 8


def is_unsafe_channels_last_conv(module: nn.Module) -> bool:
    """A dense 1x1 conv on the CPU with stride > 1 and fewer than SAFE_IN_CHANNELS inputs (the crashing shape)."""
    return (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1
            and tuple(module.stride) != (1, 1) and module.in_channels < SAFE_IN_CHANNELS
            and module.weight.device.type == "cpu")


def _contiguous_input(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (args[0].contiguous(), *args[1:])


def to_channels_last(model: nn.Module) -> nn.Module:
    """`model.to(memory_format=torch.channels_last)`, except the convs of `is_unsafe_channels_last_conv`, which
    stay NCHW (weight and input). Returns the model (converted in place, like `Module.to`)."""
    model = model.to(memory_format=torch.channels_last)
    for module in model.modules():
        if not is_unsafe_channels_last_conv(module):
            continue
        # Every call (the .to above converted this weight too). Clone, not .contiguous(): a (out, in, 1, 1)
        # channels_last weight already counts as contiguous, and its strides still pick the channels_last kernel.
        module.weight.data = module.weight.data.clone(memory_format=torch.contiguous_format)
        if not getattr(module, "_prunekit_nchw", False):
            module.register_forward_pre_hook(_contiguous_input)
            module._prunekit_nchw = True
    return model
