"""MACs/FLOPs: hand-computed layers, batch handling, model state, and two independent counters (thop, fvcore)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.measure import count_flops, count_macs
from prunekit.models import create_model


def test_single_conv_by_hand():
    conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1, bias=True)
    # output 8 x 5 x 5 (10x10 input, stride 2); each output value takes 3 * 3 * 3 multiply-adds; bias not counted
    assert count_macs(conv, torch.randn(4, 3, 10, 10)) == 8 * 5 * 5 * 3 * 3 * 3


def test_depthwise_conv_by_hand():
    conv = nn.Conv2d(6, 6, kernel_size=3, padding=1, groups=6, bias=False)
    assert count_macs(conv, torch.randn(1, 6, 7, 7)) == 6 * 7 * 7 * 3 * 3  # one input channel per output


def test_single_linear_by_hand():
    linear = nn.Linear(20, 7)
    assert count_macs(linear, torch.randn(5, 20)) == 20 * 7
    assert count_flops(linear, torch.randn(5, 20)) == 2 * 20 * 7


def test_per_sample_whatever_the_batch():
    model = create_model("small_cnn", in_channels=1)
    assert count_macs(model, torch.randn(1, 1, 8, 8)) == count_macs(model, torch.randn(6, 1, 8, 8))


def test_leaves_model_state_alone():
    torch.manual_seed(0)
    model = create_model("resnet20").train()
    model.layer1.eval()  # a mixed train/eval state must come back as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, torch.randn(3, 3, 32, 32))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats untouched
    assert model.training and not model.layer1.training and model.layer2.training
    assert all(p.grad is None for p in model.parameters())


def test_counts_a_pruned_layer_by_its_real_shape():
    wide, narrow = nn.Conv2d(4, 16, 3, padding=1), nn.Conv2d(4, 12, 3, padding=1)
    x = torch.randn(1, 4, 6, 6)
    assert count_macs(wide, x) * 12 == count_macs(narrow, x) * 16


COMPARED = ["resnet20", "resnet56", "vgg16", "mobilenetv2"]


@pytest.mark.parametrize("name", COMPARED)
def test_agrees_with_thop(name: str):
    """thop also counts BN (2-4 ops per element) and average pooling; those are set to zero to compare conv+fc."""
    thop = pytest.importorskip("thop")
    from thop.vision.basic_hooks import zero_ops

    x = torch.randn(1, 3, 32, 32)
    ours = count_macs(create_model(name), x)
    other = create_model(name)  # thop leaves buffers on the modules it profiles: give it its own copy
    theirs, _ = thop.profile(
        other, (x,), custom_ops={nn.BatchNorm2d: zero_ops, nn.AdaptiveAvgPool2d: zero_ops}, verbose=False
    )
    assert abs(ours / theirs - 1) < 0.02


@pytest.mark.parametrize("name", COMPARED)
def test_agrees_with_fvcore_conv_and_linear(name: str):
    """fvcore counts MACs per operator; its total also has batch_norm and pooling, so compare conv + linear."""
    fvcore_nn = pytest.importorskip("fvcore.nn")
    model = create_model(name).eval()
    x = torch.randn(1, 3, 32, 32)
    analysis = fvcore_nn.FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    by_operator = analysis.by_operator()
    theirs = by_operator["conv"] + by_operator["linear"]
    assert abs(count_macs(model, x) / theirs - 1) < 0.02
