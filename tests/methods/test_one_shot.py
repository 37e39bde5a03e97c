"""One-shot baselines: L1-norm filter and BN-scale pruning at a uniform rate (against NumPy), at a target MACs
ratio (against an analytic MACs formula and a brute-force sweep of the rate), residual streams under policy
"all", and a short digits run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from zoo import TwoWriterNet

from prunekit import io
from prunekit.channels import channel_groups
from prunekit.errors import UserError
from prunekit.methods.base import TrainContext
from prunekit.methods.one_shot import BNScalePruning, L1FilterPruning, OneShotParams
from prunekit.models import create_model
from prunekit.train.trainer import Trainer

CONVS = ("features.conv1", "features.conv2", "features.conv3")
WIDTHS = (16, 32, 64)


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for i in (1, 2, 3):
            bn = model.features.get_submodule(f"bn{i}")
            bn.weight.copy_(torch.randn(bn.weight.shape, generator=generator))
    return model


def context(model: nn.Module, policy: str = "internal", example=None) -> TrainContext:
    example = torch.zeros(2, 1, 8, 8) if example is None else example
    return TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=5, example_inputs=example,
                        supernet=model, groups=channel_groups(model, example, policy=policy))


def expected_keep(scores: np.ndarray, rate: float) -> list[int]:
    n_prune = int(np.floor(rate * scores.size + 1e-9))
    order = np.argsort(-scores, kind="stable")  # descending; equal scores keep the lower index first
    return sorted(order[: scores.size - n_prune].tolist())


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.9])
def test_l1_filter_uniform_rate_keeps_the_largest_l1_filters(rate):
    model = small_cnn()
    method = L1FilterPruning(OneShotParams(prune_epoch=2, rate=rate))
    ctx = context(model)
    assert method.on_train_start(ctx) is None and method.on_epoch_end(0, ctx) is None
    keep = method.on_epoch_end(1, ctx).plan.keep
    for conv in CONVS:
        weight = model.get_submodule(conv).weight.detach().numpy()
        norms = np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1)
        assert keep[conv] == expected_keep(norms, rate)


def test_bn_scale_uniform_rate_keeps_the_largest_gammas():
    model = small_cnn()
    decision = BNScalePruning(OneShotParams(prune_epoch=0, rate=0.5)).on_train_start(context(model))
    for i, conv in enumerate(CONVS, start=1):
        gamma = model.features.get_submodule(f"bn{i}").weight.detach().abs().numpy()
        assert decision.plan.keep[conv] == expected_keep(gamma, 0.5)


def small_cnn_macs(c1: int, c2: int, c3: int) -> int:
    """MACs per sample of small_cnn on 8x8 digits: conv 3x3 at 8x8, 4x4, 2x2 maps, then fc (no bias MACs)."""
    return 64 * c1 * 1 * 9 + 16 * c2 * c1 * 9 + 4 * c3 * c2 * 9 + c3 * 10


@pytest.mark.parametrize("target", [0.7, 0.3])
def test_target_macs_picks_the_smallest_uniform_rate_that_meets_it(target):
    model = small_cnn()
    decision = L1FilterPruning(OneShotParams(prune_epoch=0, target_macs_ratio=target)).on_train_start(context(model))
    counts = [len(decision.plan.keep[c]) for c in CONVS]
    dense = small_cnn_macs(*WIDTHS)
    # brute force: sweep the rate on a grid fine enough to hit every step of floor(rate * width)
    for step in range(0, 641):
        rate = step / 640
        swept = [w - int(np.floor(rate * w + 1e-9)) for w in WIDTHS]
        swept = [max(c, 1) for c in swept]
        if small_cnn_macs(*swept) <= target * dense:
            break
    assert counts == swept
    assert decision.info["macs_ratio"] == pytest.approx(small_cnn_macs(*counts) / dense)
    assert decision.info["target_macs_reached"]


def test_residual_stream_scores_combine_all_writers():
    torch.manual_seed(0)
    model = TwoWriterNet()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        model.stem_bn.weight.copy_(torch.rand(6, generator=generator))
        model.block_bn.weight.copy_(torch.rand(6, generator=generator))
    ctx = context(model, policy="all", example=torch.zeros(2, 3, 8, 8))
    assert [g.name for g in ctx.groups] == ["stem"]
    l1 = L1FilterPruning(OneShotParams(prune_epoch=0, rate=0.5, policy="all")).on_train_start(ctx)
    stem_l1 = model.stem.weight.detach().abs().sum(dim=(1, 2, 3)).numpy()
    block_l1 = model.block.weight.detach().abs().sum(dim=(1, 2, 3)).numpy()
    assert l1.plan.keep["stem"] == expected_keep(stem_l1 + block_l1, 0.5)
    bn = BNScalePruning(OneShotParams(prune_epoch=0, rate=0.5, policy="all")).on_train_start(ctx)
    largest = np.maximum(model.stem_bn.weight.detach().numpy(), model.block_bn.weight.detach().numpy())
    assert bn.plan.keep["stem"] == expected_keep(largest, 0.5)


def test_exactly_one_of_rate_and_target_macs_ratio():
    with pytest.raises(UserError, match="exactly one"):
        OneShotParams(prune_epoch=1)
    with pytest.raises(UserError, match="exactly one"):
        OneShotParams(prune_epoch=1, rate=0.5, target_macs_ratio=0.5)


@pytest.mark.parametrize("method", ["l1_filter", "bn_scale"])
def test_short_digits_run_shrinks_and_training_flops_fall(tmp_path, digits_config, method):
    cfg = digits_config(3, method, "{prune_epoch: 1, rate: 0.5}")
    summary = Trainer(cfg, tmp_path / "run", quiet=True).fit()
    assert summary["macs"] < summary["dense_macs"]
    records = io.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in records if r["kind"] == "decision"] == [0]
    assert next(r for r in records if r["kind"] == "decision")["select_seconds"] >= 0.0
    assert epochs[1]["train_flops"] < epochs[0]["train_flops"]
