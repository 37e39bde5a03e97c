"""HRank method: the plan removes channels built to have low-rank feature maps (ranks re-checked with NumPy),
rate forms (uniform / list / mapping), and a short digits run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit import io
from prunekit.channels import channel_groups
from prunekit.errors import UserError
from prunekit.methods.base import TrainContext
from prunekit.methods.hrank import HRank, HRankParams
from prunekit.models import create_model
from prunekit.train.trainer import Trainer

RANK_ONE = (2, 5, 9)  # conv1 channels with constant maps
RANK_ZERO = (0, 1)  # conv2 channels with all-zero maps


def constructed_model() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    f = model.features
    with torch.no_grad():
        for c in RANK_ONE:  # zero filter, positive BN shift: ReLU gives a constant map (rank 1)
            f.conv1.weight[c] = 0
            f.bn1.bias[c] = 0.5
        for c in RANK_ZERO:  # zero filter, negative BN shift: ReLU gives zeros (rank 0)
            f.conv2.weight[c] = 0
            f.bn2.bias[c] = -1.0
    return model


def batches(count: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(3)
    return [(torch.randn(8, 1, 8, 8, generator=generator), torch.zeros(8, dtype=torch.long)) for _ in range(count)]


def context(model: nn.Module, data) -> TrainContext:
    example = torch.zeros(2, 1, 8, 8)
    return TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=5, example_inputs=example,
                        train_batches=lambda: iter(data), supernet=model,
                        groups=channel_groups(model, example, policy="internal"))


def numpy_mean_ranks(model: nn.Module, data) -> list[np.ndarray]:
    """Average rank of each channel's post-ReLU map of the three conv-BN layers, by hand in eval mode."""
    model.eval()
    sums, count = None, 0
    with torch.no_grad():
        for images, _ in data:
            x, per_layer = images, []
            for i in (1, 2, 3):
                conv, bn = model.features.get_submodule(f"conv{i}"), model.features.get_submodule(f"bn{i}")
                x = F.relu(F.batch_norm(conv(x), bn.running_mean, bn.running_var, bn.weight, bn.bias, False,
                                        0.0, bn.eps))
                maps = x.numpy()
                per_layer.append(np.array([[np.linalg.matrix_rank(maps[n, c]) for c in range(maps.shape[1])]
                                           for n in range(maps.shape[0])]).sum(axis=0))
            sums = per_layer if sums is None else [a + b for a, b in zip(sums, per_layer, strict=True)]
            count += images.shape[0]
    model.train()
    return [s / count for s in sums]


def test_plan_removes_the_constructed_low_rank_channels():
    model, data = constructed_model(), batches()
    ranks = numpy_mean_ranks(model, data)
    # the construction works: the chosen channels are exactly the lowest-ranked ones
    assert sorted(np.argsort(ranks[0], kind="stable")[:3].tolist()) == list(RANK_ONE)
    assert ranks[0][list(RANK_ONE)].max() == 1 and np.delete(ranks[0], RANK_ONE).min() > 1
    assert ranks[1][list(RANK_ZERO)].max() == 0 and np.delete(ranks[1], RANK_ZERO).min() > 0

    method = HRank(HRankParams(prune_epoch=2, rates=[3 / 16, 2 / 32, 0.0], rank_batches=2))
    ctx = context(model, data)
    assert method.on_train_start(ctx) is None
    decision = method.on_epoch_end(1, ctx)
    assert decision.plan.keep["features.conv1"] == [c for c in range(16) if c not in RANK_ONE]
    assert decision.plan.keep["features.conv2"] == [c for c in range(32) if c not in RANK_ZERO]
    assert "features.conv3" not in decision.plan.keep  # rate 0: untouched
    assert decision.info["mean_rank"]["features.conv1"] == pytest.approx(float(ranks[0].mean()), abs=1e-3)


def test_rates_as_a_mapping_and_as_one_uniform_rate():
    model, data = constructed_model(), batches()
    by_name = HRank(HRankParams(prune_epoch=0, rates={"features.conv1": 3 / 16}, rank_batches=2))
    keep = by_name.on_train_start(context(model, data)).plan.keep
    assert keep == {"features.conv1": [c for c in range(16) if c not in RANK_ONE]}
    uniform = HRank(HRankParams(prune_epoch=0, rates=0.25, rank_batches=2))
    keep = uniform.on_train_start(context(model, data)).plan.keep
    assert [len(keep[g]) for g in ("features.conv1", "features.conv2", "features.conv3")] == [12, 24, 48]
    assert not set(RANK_ONE) & set(keep["features.conv1"])


def test_a_rate_list_of_the_wrong_length_names_the_groups():
    method = HRank(HRankParams(prune_epoch=1, rates=[0.5, 0.5]))
    with pytest.raises(UserError, match="features.conv1, features.conv2, features.conv3"):
        method.on_train_start(context(constructed_model(), batches()))


def test_short_digits_run_shrinks_and_training_flops_fall(tmp_path, digits_config):
    cfg = digits_config(3, "hrank", "{prune_epoch: 1, rates: [0.25, 0.5, 0.5], rank_batches: 2}")
    summary = Trainer(cfg, tmp_path / "run", quiet=True).fit()
    assert summary["macs"] < summary["dense_macs"]
    records = io.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    epochs = [r for r in records if r["kind"] == "epoch"]
    decisions = [r for r in records if r["kind"] == "decision"]
    assert [d["epoch"] for d in decisions] == [0]
    assert decisions[0]["kept"] == {"features.conv1": 12, "features.conv2": 16, "features.conv3": 32}
    assert epochs[1]["train_flops"] < epochs[0]["train_flops"]


def resnet_context(policy):
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=3)
    generator = torch.Generator().manual_seed(4)
    data = [(torch.randn(4, 3, 8, 8, generator=generator), torch.zeros(4, dtype=torch.long)) for _ in range(2)]
    example = torch.zeros(2, 3, 8, 8)
    return model, data, TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=5,
                                     example_inputs=example, train_batches=lambda: iter(data), supernet=model,
                                     groups=channel_groups(model, example, policy=policy))


def numpy_bn_ranks(model, data, names):
    """{BN name: mean rank of each channel of ReLU(BN output)}, by forward hooks and NumPy."""
    sums, handles = {n: 0.0 for n in names}, []
    for name in names:
        def hook(_module, _inputs, output, name=name):
            maps = torch.relu(output).numpy()
            sums[name] = sums[name] + np.array([[np.linalg.matrix_rank(maps[i, c]) for c in range(maps.shape[1])]
                                                for i in range(maps.shape[0])]).sum(axis=0)
        handles.append(model.get_submodule(name).register_forward_hook(hook))
    model.eval()
    with torch.no_grad():
        for images, _ in data:
            model(images)
    model.train()
    for handle in handles:
        handle.remove()
    count = sum(images.shape[0] for images, _ in data)
    return {n: s / count for n, s in sums.items()}


def test_default_policy_prunes_every_conv_of_a_resnet_as_the_official_code():
    assert HRankParams(prune_epoch=0).policy == "all"
    model, data, ctx = resnet_context("all")
    streams = [g for g in ctx.groups if not g.internal]
    assert len(streams) == 3 and len(ctx.groups) == 12  # 3 residual streams + 9 block conv1s
    decision = HRank(HRankParams(prune_epoch=0, rates=0.6, rank_batches=2)).on_train_start(ctx)
    # every group, block outputs included, keeps size - floor(0.6 size) channels (HRank: int(rate * F) go)
    assert {g.name: len(decision.plan.keep[g.name]) for g in ctx.groups} == {
        g.name: g.size - int(0.6 * g.size) for g in ctx.groups}
    # a stream's rank is the mean over the ReLU(BN) maps after each of its writers, checked by hand
    stream = streams[0]
    bns = [n for n in stream.norm_layers if isinstance(model.get_submodule(n), nn.BatchNorm2d)]
    assert len(bns) >= 4  # stem BN + one bn2 per block of the first stage
    ranks = numpy_bn_ranks(model, data, bns)
    mean = np.mean([ranks[n] for n in bns], axis=0)
    expected = sorted(np.argsort(mean, kind="stable")[int(0.6 * stream.size):].tolist())
    assert decision.plan.keep[stream.name] == expected  # ties: the lower index goes first in both
    assert decision.info["mean_rank"][stream.name] == pytest.approx(float(mean.mean()), abs=1e-3)
    # the old layer set stays available: policy internal leaves the streams whole
    _, _, ctx_internal = resnet_context("internal")
    keep = HRank(HRankParams(prune_epoch=0, rates=0.6, rank_batches=2, policy="internal")).on_train_start(
        ctx_internal).plan.keep
    assert len(keep) == 9 and all(name.endswith("conv1") and name != "conv1" for name in keep)
