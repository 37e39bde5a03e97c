"""channels_last with the guard: the 1x1 stride-2 convs under 8 inputs stay NCHW (weight strides and input), the
rest is channels_last, outputs and gradients equal an NCHW model's, and such a layer trains in a fresh process
(on the AVX2 CPU where torch 2.13's channels_last kernel corrupts the heap, the same script without the guard
exits 134/139)."""

import copy
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from prunekit.memory_format import SAFE_IN_CHANNELS, is_unsafe_channels_last_conv, to_channels_last


def narrow_shortcut_net(width: int) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))


@pytest.mark.parametrize("width, unsafe", [(1, True), (4, True), (7, True), (8, False), (12, False)])
def test_which_convs_are_kept_nchw(width, unsafe):
    net = to_channels_last(narrow_shortcut_net(width))
    shortcut = net[3]
    assert is_unsafe_channels_last_conv(shortcut) is unsafe
    assert (shortcut.weight.stride() == (width, 1, 1, 1)) is unsafe  # default strides, not the ambiguous CL ones
    assert bool(shortcut._forward_pre_hooks) is unsafe
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not net[0].weight.is_contiguous()  # the 3x3 convs are channels_last either way
    assert not is_unsafe_channels_last_conv(nn.Conv2d(4, 16, 3, stride=2))
    assert not is_unsafe_channels_last_conv(nn.Conv2d(4, 16, 1, stride=1))
    assert SAFE_IN_CHANNELS == 8


def test_converting_twice_registers_one_hook_and_keeps_the_weight_nchw():
    net = to_channels_last(to_channels_last(narrow_shortcut_net(4)))
    assert len(net[3]._forward_pre_hooks) == 1
    assert net[3].weight.stride() == (4, 1, 1, 1)


def test_outputs_and_gradients_equal_the_nchw_model():
    reference = narrow_shortcut_net(4)
    guarded = to_channels_last(copy.deepcopy(reference))
    x = torch.randn(6, 3, 16, 16)
    out_ref = reference(x)
    out = guarded(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
    out_ref.square().sum().backward()
    out.square().sum().backward()
    for (name, p_ref), (_, p) in zip(reference.named_parameters(), guarded.named_parameters(), strict=True):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_the_crashing_shape_trains_in_a_fresh_process():
    script = textwrap.dedent("""
        import torch
        from torch import nn
        from prunekit.memory_format import to_channels_last
        torch.set_num_threads(1)
        net = to_channels_last(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 32, 1, stride=2, bias=False)))
        x = torch.randn(64, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        for _ in range(3):
            net(x).sum().backward()
        print("trained")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "trained" in done.stdout, done.stderr[-2000:]
