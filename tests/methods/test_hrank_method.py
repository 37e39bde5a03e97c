"""HRank method: the plan removes channels built to have low-rank feature maps (ranks re-checked with NumPy),
rate forms (uniform / list / mapping), the layerwise schedule (which group at which epoch, ranks on the current
subnet, exact resume mid-schedule), and short digits runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit import io
from prunekit.channels import ChannelPlan, channel_groups, materialize
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

    method = HRank(HRankParams(prune_epoch=2, rates=[3 / 16, 2 / 32, 0.0], rank_batches=2, schedule="oneshot"))
    ctx = context(model, data)
    assert method.on_train_start(ctx) is None
    decision = method.on_epoch_end(1, ctx)
    assert decision.plan.keep["features.conv1"] == [c for c in range(16) if c not in RANK_ONE]
    assert decision.plan.keep["features.conv2"] == [c for c in range(32) if c not in RANK_ZERO]
    assert "features.conv3" not in decision.plan.keep  # rate 0: untouched
    assert decision.info["mean_rank"]["features.conv1"] == pytest.approx(float(ranks[0].mean()), abs=1e-3)


def test_rates_as_a_mapping_and_as_one_uniform_rate():
    model, data = constructed_model(), batches()
    by_name = HRank(HRankParams(prune_epoch=0, rates={"features.conv1": 3 / 16}, rank_batches=2,
                                   schedule="oneshot"))
    keep = by_name.on_train_start(context(model, data)).plan.keep
    assert keep == {"features.conv1": [c for c in range(16) if c not in RANK_ONE]}
    uniform = HRank(HRankParams(prune_epoch=0, rates=0.25, rank_batches=2, schedule="oneshot"))
    keep = uniform.on_train_start(context(model, data)).plan.keep
    assert [len(keep[g]) for g in ("features.conv1", "features.conv2", "features.conv3")] == [12, 24, 48]
    assert not set(RANK_ONE) & set(keep["features.conv1"])


def test_a_rate_list_of_the_wrong_length_names_the_groups():
    method = HRank(HRankParams(prune_epoch=1, rates=[0.5, 0.5]))
    with pytest.raises(UserError, match="features.conv1, features.conv2, features.conv3"):
        method.on_train_start(context(constructed_model(), batches()))


def test_short_digits_run_shrinks_and_training_flops_fall(tmp_path, digits_config):
    cfg = digits_config(3, "hrank", "{prune_epoch: 1, rates: [0.25, 0.5, 0.5], rank_batches: 2, schedule: oneshot}")
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
    decision = HRank(HRankParams(prune_epoch=0, rates=0.6, rank_batches=2, schedule="oneshot")).on_train_start(ctx)
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
    keep = HRank(HRankParams(prune_epoch=0, rates=0.6, rank_batches=2, policy="internal",
                             schedule="oneshot")).on_train_start(
        ctx_internal).plan.keep
    assert len(keep) == 9 and all(name.endswith("conv1") and name != "conv1" for name in keep)


def test_layerwise_prunes_one_group_per_interval_with_ranks_of_the_current_subnet():
    assert HRankParams(prune_epoch=1).schedule == "layerwise"
    model, data = constructed_model(), batches()
    method = HRank(HRankParams(prune_epoch=1, rates=[3 / 16, 2 / 32, 0.0], rank_batches=2, interval=2))
    ctx = context(model, data)
    assert method.on_train_start(ctx) is None
    # decision k after epoch 1 + 2k (counted from 1): on_epoch_end(0) conv1, on_epoch_end(2) conv2; conv3 has rate 0
    first = method.on_epoch_end(0, ctx)
    assert first.plan.keep == {"features.conv1": [c for c in range(16) if c not in RANK_ONE]}
    assert first.info["groups"] == ["features.conv1"] and first.info["decisions"] == 2
    # what SupernetState does with the decision: the trained model becomes the subnet
    ctx.plan, ctx.model = first.plan, materialize(model, first.plan, ctx.groups)
    assert method.on_epoch_end(1, ctx) is None
    second = method.on_epoch_end(2, ctx)
    assert second.plan.keep["features.conv1"] == first.plan.keep["features.conv1"]
    assert second.plan.keep["features.conv2"] == [c for c in range(32) if c not in RANK_ZERO]
    # the ranks are those of the subnet (13 conv1 channels feed conv2), computed by hand
    sub_ranks = numpy_mean_ranks(ctx.model, data)
    assert sub_ranks[1].shape == (32,) and ctx.model.features.conv2.in_channels == 13
    assert second.info["mean_rank"] == {"features.conv2": pytest.approx(float(sub_ranks[1].mean()), abs=1e-3)}
    ctx.plan = second.plan
    assert all(method.on_epoch_end(e, ctx) is None for e in range(3, 5))


def test_layerwise_schedule_must_fit_in_the_run():
    method = HRank(HRankParams(prune_epoch=2, rates=0.25, interval=2))  # decisions after epochs 2, 4, 6
    with pytest.raises(UserError, match="beyond train.epochs = 5"):
        method.on_train_start(context(constructed_model(), batches()))


def layerwise_run(digits_config, ranks="current"):
    return digits_config(6, "hrank", "{prune_epoch: 1, rates: [0.25, 0.5, 0.5], rank_batches: 2, "
                                     f"interval: 2, schedule: layerwise, ranks: {ranks}}}")


def test_layerwise_digits_run_cuts_one_group_per_interval(tmp_path, digits_config):
    Trainer(layerwise_run(digits_config), tmp_path / "run", quiet=True).fit()
    records = io.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    decisions = [r for r in records if r["kind"] == "decision"]
    # by hand: decisions after epochs 1, 3, 5 (epoch indices 0, 2, 4), one group each in module order;
    # kept = width - floor(rate * width) for the groups cut so far, full width for the others
    assert [d["epoch"] for d in decisions] == [0, 2, 4]
    assert [d["groups"] for d in decisions] == [["features.conv1"], ["features.conv2"], ["features.conv3"]]
    assert [d["kept"] for d in decisions] == [
        {"features.conv1": 12},
        {"features.conv1": 12, "features.conv2": 16},
        {"features.conv1": 12, "features.conv2": 16, "features.conv3": 32}]


@pytest.mark.parametrize("ranks", ["current", "once"])
def test_layerwise_resume_between_two_decisions_is_exact(digits_config, check_exact_resume, ranks):
    # killed in epoch 2 (index 1), after the first decision and before the second and third; with ranks: once
    # the later decisions use the ranks stored at the first, which the resumed run must read from the checkpoint
    check_exact_resume(layerwise_run(digits_config, ranks), lambda steps_per_epoch: steps_per_epoch + 3)


def test_layerwise_ranks_once_reuses_the_first_decisions_ranks():
    model, data = constructed_model(), batches()
    full_ranks = numpy_mean_ranks(model, data)  # the network at the first decision, by hand
    method = HRank(HRankParams(prune_epoch=1, rates=[3 / 16, 0.25, 0.0], rank_batches=2, ranks="once"))
    ctx = context(model, data)
    method.on_train_start(ctx)
    first = method.on_epoch_end(0, ctx)
    assert first.plan.keep["features.conv1"] == [c for c in range(16) if c not in RANK_ONE]
    ctx.plan, ctx.model = first.plan, materialize(model, first.plan, ctx.groups)
    # make conv2's current ranks differ: zero the subnet's bn2 scale, so ReLU(BN) is a constant map everywhere
    with torch.no_grad():
        ctx.model.features.bn2.weight.zero_()
        ctx.model.features.bn2.bias.fill_(0.5)
    second = method.on_epoch_end(1, ctx)
    expected = sorted(np.argsort(full_ranks[1], kind="stable")[8:].tolist())  # floor(0.25 * 32) = 8 go
    assert expected != list(range(8, 32))  # what the current (all rank 1, ties by index) ranks would keep
    assert second.plan.keep["features.conv2"] == expected
    assert second.info["mean_rank"]["features.conv2"] == pytest.approx(float(full_ranks[1].mean()), abs=1e-3)
    # the stored ranks travel with the checkpoint
    restored = HRank(method.params)
    restored.load_state_tensors(method.state_tensors())
    assert restored.stored_ranks.keys() == {"features.conv1", "features.conv2"}
    assert np.allclose(restored.stored_ranks["features.conv1"].numpy(), full_ranks[0], atol=1e-5)
    assert torch.equal(restored.stored_ranks["features.conv2"], method.stored_ranks["features.conv2"])


def test_round_to_8_rounds_each_cut_up_with_the_next_highest_ranks():
    model, data = constructed_model(), batches()
    ranks = numpy_mean_ranks(model, data)
    params = {"prune_epoch": 0, "rates": 0.4, "rank_batches": 2, "schedule": "oneshot"}
    cut = HRank(HRankParams(**params)).on_train_start(context(model, data)).plan
    rounded = HRank(HRankParams(**params, round_to=8)).on_train_start(context(model, data)).plan
    groups = context(model, data).groups
    assert [len(cut.kept(g)) for g in groups] == [10, 20, 39]  # 16, 32, 64 less floor(0.4 * width)
    assert [len(rounded.kept(g)) for g in groups] == [16, 24, 40]
    for group, layer_ranks in zip(groups, ranks, strict=True):
        added = sorted(set(rounded.kept(group)) - set(cut.kept(group)))
        still_out = sorted(set(range(group.size)) - set(rounded.kept(group)))
        assert set(cut.kept(group)) <= set(rounded.kept(group))
        if added and still_out:  # the channels brought back rank at least as high as those left out
            assert layer_ranks[added].min() >= layer_ranks[still_out].max() - 1e-9, group.name


def test_round_to_8_never_brings_back_a_channel_an_earlier_decision_removed():
    supernet, data = constructed_model(), batches()
    example = torch.zeros(2, 1, 8, 8)
    groups = channel_groups(supernet, example, policy="internal")
    earlier = ChannelPlan({"features.conv1": list(range(1, 16))})  # channel 0 went at an earlier decision
    subnet = materialize(supernet, earlier, groups)
    ctx = TrainContext(model=subnet, optimizer=None, steps_per_epoch=1, epochs=5, example_inputs=example,
                       train_batches=lambda: iter(data), supernet=supernet, groups=groups, plan=earlier)
    method = HRank(HRankParams(prune_epoch=0, rates={"features.conv1": 3 / 16}, rank_batches=2, schedule="oneshot",
                               round_to=8))
    plan, _ = method.make_plan(ctx)
    # floor(3/16 * 16) = 3 of the full width go, one is already gone: 13 kept, rounded up to 16, capped at the 15
    assert plan.keep["features.conv1"] == list(range(1, 16))


def test_hardware_widths_travel_in_the_state(tmp_path):
    method = HRank(HRankParams(prune_epoch=0, round_to="hardware"))
    method.rounding.tables = {"features.conv1": {8: 1e-3, 16: 2e-3}}
    restored = HRank(HRankParams(prune_epoch=0, round_to="hardware"))
    restored.load_state_dict(method.state_dict())
    assert restored.rounding.tables == method.rounding.tables
