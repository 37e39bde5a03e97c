"""Network Slimming method: the BN-scale sub-gradient, the global percentile cut in the resulting plan (checked
against a NumPy sort), the min-channels guard, and a short digits run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from prunekit import io
from prunekit.channels import channel_groups
from prunekit.errors import UserError
from prunekit.methods.base import TrainContext
from prunekit.methods.slimming import NetworkSlimming, SlimmingParams
from prunekit.models import create_model
from prunekit.train.trainer import Trainer

BNS = ("features.bn1", "features.bn2", "features.bn3")


def small_cnn_with_gammas(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name in BNS:
            bn = model.get_submodule(name)
            bn.weight.copy_(torch.randn(bn.weight.shape, generator=generator))  # distinct, some negative
    return model


def context(model: nn.Module, epochs: int = 5) -> TrainContext:
    example = torch.zeros(2, 1, 8, 8)
    return TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=epochs, example_inputs=example,
                        supernet=model, groups=channel_groups(model, example, policy="internal"))


def test_after_backward_adds_s_sign_gamma_to_the_bn_scales_only():
    model = small_cnn_with_gammas()
    method = NetworkSlimming(SlimmingParams(prune_epoch=2, s=1e-3))
    method.on_train_start(context(model))
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    method.after_backward(model)
    for name, param in model.named_parameters():
        expected = before[name]
        if name.endswith(".weight") and name.rsplit(".", 1)[0] in BNS:
            expected = expected + 1e-3 * torch.sign(param.detach())
        torch.testing.assert_close(param.grad, expected, rtol=0, atol=1e-9, msg=name)


def test_after_backward_follows_a_new_model_object():
    # After pruning, the trainer trains a new (smaller) model object: the cached BN scales must follow it.
    method = NetworkSlimming(SlimmingParams(prune_epoch=2, s=1e-3))
    method.on_train_start(context(small_cnn_with_gammas(0)))
    for model in (small_cnn_with_gammas(0), small_cnn_with_gammas(1)):
        model(torch.randn(4, 1, 8, 8)).sum().backward()
        before = {name: model.get_submodule(name).weight.grad.clone() for name in BNS}
        method.after_backward(model)
        for name in BNS:
            gamma = model.get_submodule(name).weight
            torch.testing.assert_close(gamma.grad, before[name] + 1e-3 * torch.sign(gamma.detach()), rtol=0,
                                       atol=1e-9)


@pytest.mark.parametrize("percentile", [0.0, 0.3, 0.55])
def test_global_threshold_removes_exactly_the_smallest_fraction(percentile):
    model = small_cnn_with_gammas()
    method = NetworkSlimming(SlimmingParams(prune_epoch=3, percentile=percentile))
    ctx = context(model)
    assert method.on_train_start(ctx) is None
    assert method.on_epoch_end(1, ctx) is None  # not yet
    decision = method.on_epoch_end(2, ctx)
    # independent: sort |gamma| of all 112 channels with NumPy, the floor(p * 112) smallest go
    gammas = [model.get_submodule(n).weight.detach().abs().numpy() for n in BNS]
    everything = np.concatenate(gammas)
    n_prune = int(np.floor(percentile * everything.size + 1e-9))
    cut = np.sort(everything)[n_prune]
    for conv, gamma in zip(("features.conv1", "features.conv2", "features.conv3"), gammas, strict=True):
        assert decision.plan.keep[conv] == np.flatnonzero(gamma >= cut).tolist()
    removed = 112 - sum(len(v) for v in decision.plan.keep.values())
    assert removed == n_prune
    assert decision.info["threshold"] == pytest.approx(float(cut))
    assert method.on_epoch_end(3, ctx) is None  # prunes once


def test_no_group_is_pruned_to_zero_channels():
    model = small_cnn_with_gammas()
    with torch.no_grad():
        model.features.bn1.weight.mul_(1e-3)  # every bn1 scale below every other scale
    method = NetworkSlimming(SlimmingParams(prune_epoch=1, percentile=0.5, min_channels=2))
    ctx = context(model)
    method.on_train_start(ctx)
    keep = method.on_epoch_end(0, ctx).plan.keep
    order = np.argsort(-model.features.bn1.weight.detach().abs().numpy())
    assert keep["features.conv1"] == sorted(order[:2].tolist())


def test_prune_epoch_beyond_the_run_is_a_user_error():
    method = NetworkSlimming(SlimmingParams(prune_epoch=9))
    with pytest.raises(UserError, match="prune_epoch"):
        method.on_train_start(context(small_cnn_with_gammas(), epochs=5))


def test_short_digits_run_shrinks_and_training_flops_fall(tmp_path, digits_config):
    cfg = digits_config(3, "slimming", "{prune_epoch: 1, percentile: 0.5}")
    summary = Trainer(cfg, tmp_path / "run", quiet=True).fit()
    assert summary["macs"] < summary["dense_macs"]
    records = io.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    epochs = [r for r in records if r["kind"] == "epoch"]
    decisions = [r for r in records if r["kind"] == "decision"]
    assert [d["epoch"] for d in decisions] == [0]
    assert sum(decisions[0]["removed"].values()) == 56  # half of the 112 BN channels
    assert epochs[1]["train_flops"] < epochs[0]["train_flops"] and epochs[2]["train_flops"] == epochs[1]["train_flops"]


def test_resume_after_the_pruning_decision_matches_the_uninterrupted_run(check_exact_resume, digits_config):
    cfg = digits_config(3, "slimming", "{prune_epoch: 1, percentile: 0.5}")
    cut = check_exact_resume(cfg, lambda steps_per_epoch: steps_per_epoch + 3)  # epoch 2, after the cut
    decisions = [r for r in io.read_jsonl(cut / "metrics.jsonl") if r["kind"] == "decision"]
    assert len(decisions) == 1  # the resumed run did not cut a second time


def resnet_with_gammas():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=3)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator))
    example = torch.zeros(2, 3, 8, 8)
    ctx = TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=5, example_inputs=example,
                       supernet=model, groups=channel_groups(model, example, policy="internal"))
    return model, ctx


def test_default_population_is_every_bn_as_the_official_code():
    model, ctx = resnet_with_gammas()
    method = NetworkSlimming(SlimmingParams(prune_epoch=0, percentile=0.4, s=1e-3))
    decision = method.on_train_start(ctx)
    all_bns = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert method.bn_names == sorted(all_bns) and len(all_bns) == 21  # the L1 term covers every BN
    # independent: NumPy sort over every BN channel; only the block conv1 BNs (the groups) lose channels
    gammas = {n: model.get_submodule(n).weight.detach().abs().numpy() for n in all_bns}
    everything = np.concatenate(list(gammas.values()))
    cut = np.sort(everything)[int(np.floor(0.4 * everything.size + 1e-9))]
    assert len(ctx.groups) == 9
    for group in ctx.groups:
        assert decision.plan.keep[group.name] == np.flatnonzero(gammas[group.bn] >= cut).tolist(), group.name
    assert decision.info["threshold"] == pytest.approx(float(cut))
    assert decision.info["population_channels"] == everything.size
    # population "groups": the earlier form, the cut over the groups' BNs only
    model, ctx = resnet_with_gammas()
    method = NetworkSlimming(SlimmingParams(prune_epoch=0, percentile=0.4, population="groups"))
    decision = method.on_train_start(ctx)
    assert method.bn_names == sorted(g.bn for g in ctx.groups)
    inside = np.concatenate([gammas[g.bn] for g in ctx.groups])
    cut = np.sort(inside)[int(np.floor(0.4 * inside.size + 1e-9))]
    for group in ctx.groups:
        assert decision.plan.keep[group.name] == np.flatnonzero(gammas[group.bn] >= cut).tolist(), group.name
