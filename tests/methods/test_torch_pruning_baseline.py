"""Torch-Pruning baseline: the translated ChannelPlan rebuilds exactly the network Torch-Pruning pruned itself
(float64 outputs of `materialize` against Torch-Pruning's own surgery), keeps the channels NumPy ranks highest,
meets a MACs target on ResNet-20 (measured independently with `count_macs` on Torch-Pruning's pruned copies),
and a short digits run ends smaller."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from prunekit import io
from prunekit.channels import channel_groups, materialize
from prunekit.errors import UserError
from prunekit.measure import count_macs
from prunekit.methods.base import TrainContext
from prunekit.methods.torch_pruning_baseline import (
    TorchPruningBaseline,
    TorchPruningParams,
    candidate_ratios,
    plan_from_removals,
    tp_prune,
)
from prunekit.models import create_model
from prunekit.train.trainer import Trainer

SHAPES = {"small_cnn": (1, 8, 8), "resnet20": (3, 32, 32)}


def randomised(name: str) -> nn.Module:
    """A float64 model whose BatchNorms have distinct random gammas, betas and running statistics."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=SHAPES[name][0]).double().eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.randn(n, generator=generator, dtype=torch.float64))
                module.bias.copy_(torch.randn(n, generator=generator, dtype=torch.float64) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=generator, dtype=torch.float64) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator, dtype=torch.float64) + 0.5)
    return model


def context(model: nn.Module, name: str, policy: str = "all") -> TrainContext:
    example = torch.randn(2, *SHAPES[name], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=4, example_inputs=example,
                        supernet=model, groups=channel_groups(model, example, policy=policy))


@pytest.mark.parametrize(("name", "importance", "policy"), [
    ("small_cnn", "bn_scale", "all"), ("small_cnn", "group_norm", "all"),
    ("resnet20", "bn_scale", "all"), ("resnet20", "group_norm", "all"), ("resnet20", "group_norm", "internal")])
def test_translated_plan_rebuilds_the_network_torch_pruning_pruned(name, importance, policy):
    model = randomised(name)
    ctx = context(model, name, policy)
    decision = TorchPruningBaseline(TorchPruningParams(prune_epoch=0, importance=importance, pruning_ratio=0.4,
                                                       policy=policy)).on_train_start(ctx)
    pruned, history = tp_prune(model, ctx.groups, ctx.example_inputs, importance, 0.4)  # Torch-Pruning's surgery
    assert decision.plan.keep == plan_from_removals(history, ctx.groups).keep
    subnet = materialize(model, decision.plan, ctx.groups).eval()
    x = torch.randn(3, *SHAPES[name], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        assert (subnet(x) - pruned.eval()(x)).abs().max().item() < 1e-9
    ours = {n: tuple(p.shape) for n, p in subnet.named_parameters()}
    assert ours == {n: tuple(p.shape) for n, p in pruned.named_parameters()}
    for group in ctx.groups:  # local pruning: every group keeps int(n * 0.6)
        assert len(decision.plan.kept(group)) == int(group.size * (1 - 0.4))
    streams = [g for g in ctx.groups if not g.internal]
    # ResNet-20 under "all": Torch-Pruning pruned the residual streams too, and our plan follows
    assert len(streams) == (3 if (name, policy) == ("resnet20", "all") else 0)
    assert all(len(decision.plan.kept(g)) < g.size for g in streams)


def test_bn_scale_keeps_the_largest_gammas_on_single_bn_groups():
    model = randomised("small_cnn")
    ctx = context(model, "small_cnn")
    decision = TorchPruningBaseline(TorchPruningParams(prune_epoch=0, importance="bn_scale",
                                                       pruning_ratio=0.5)).on_train_start(ctx)
    for i, conv in enumerate(("features.conv1", "features.conv2", "features.conv3"), start=1):
        gamma = model.features.get_submodule(f"bn{i}").weight.detach().abs().numpy()
        expected = np.sort(np.argsort(-gamma, kind="stable")[: gamma.size // 2])
        assert decision.plan.keep[conv] == expected.tolist()
    assert decision.info["importance"] == "bn_scale" and decision.info["pruning_ratio"] == 0.5
    assert decision.info["select_seconds"] > 0


def test_macs_target_is_met_on_resnet20_by_the_smallest_ratio():
    model = randomised("resnet20")
    ctx = context(model, "resnet20")
    decision = TorchPruningBaseline(TorchPruningParams(prune_epoch=0, importance="group_norm",
                                                       target_macs_ratio=0.5)).on_train_start(ctx)
    x = ctx.example_inputs[:1]
    dense = count_macs(model, x)
    ratio = decision.info["pruning_ratio"]
    pruned, _ = tp_prune(model, ctx.groups, x, "group_norm", ratio)
    measured = count_macs(pruned, x) / dense
    assert 0.47 <= measured <= 0.5
    assert decision.info["macs_ratio"] == pytest.approx(measured) and decision.info["target_macs_reached"]
    ratios = candidate_ratios([g.size for g in ctx.groups])
    previous = ratios[ratios.index(ratio) - 1]  # one step less pruning misses the target
    assert count_macs(tp_prune(model, ctx.groups, x, "group_norm", previous)[0], x) > 0.5 * dense


def test_params_are_validated():
    with pytest.raises(UserError, match="exactly one"):
        TorchPruningParams(prune_epoch=1)
    with pytest.raises(UserError, match="importance"):
        TorchPruningParams(prune_epoch=1, pruning_ratio=0.3, importance="taylor")
    with pytest.raises(UserError, match="prune_epoch"):
        TorchPruningParams(pruning_ratio=0.3)
    model = randomised("small_cnn")
    with pytest.raises(UserError, match="no channel"):  # the 16-channel group would keep int(16 * 0.05) = 0
        TorchPruningBaseline(TorchPruningParams(prune_epoch=0, pruning_ratio=0.95)).on_train_start(
            context(model, "small_cnn"))


def test_short_digits_run_ends_smaller(tmp_path, digits_config):
    cfg = digits_config(2, "torch_pruning", "{prune_epoch: 1, importance: bn_scale, target_macs_ratio: 0.5}")
    summary = Trainer(cfg, tmp_path / "run", quiet=True).fit()
    assert summary["macs"] <= 0.5 * summary["dense_macs"]
    records = io.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    decisions = [r for r in records if r["kind"] == "decision"]
    assert [r["epoch"] for r in decisions] == [0]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert epochs[1]["train_flops"] < epochs[0]["train_flops"]
