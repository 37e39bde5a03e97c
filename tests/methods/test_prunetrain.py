"""PruneTrain method: penalty-weight calibration, the both-sides and channel-union rules on hand-built networks
with known sparse channels, and a short digits run that actually shrinks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit import io
from prunekit.channels import ChannelPlan, channel_groups
from prunekit.errors import UserError
from prunekit.methods.base import TrainContext
from prunekit.methods.prunetrain import PruneTrain, PruneTrainParams
from prunekit.models import create_model
from prunekit.train.trainer import Trainer


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("small_cnn", num_classes=10, in_channels=1)


def context(model: nn.Module, example: torch.Tensor, batches=None, plan=None, groups=None) -> TrainContext:
    groups = groups if groups is not None else channel_groups(model, example, policy="all")
    return TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=10, example_inputs=example,
                        train_batches=(lambda: iter(batches)) if batches is not None else None,
                        supernet=model, groups=groups, plan=plan)


def numpy_group_lasso(model: nn.Module, eps: float = 1e-8) -> float:
    """R_GL by hand: every conv's output filters and input channels (not the first conv's input), the fc's
    input columns (not its class rows)."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    total = 0.0
    for index, (_, module) in enumerate(layers):
        w = module.weight.detach().double().numpy()
        w = w.reshape(w.shape[0], w.shape[1], -1)
        if index != len(layers) - 1:  # output groups, except the classifier
            total += np.sqrt((w**2).sum(axis=(1, 2)) + eps).sum()
        if index != 0:  # input groups, except the network input
            total += np.sqrt((w**2).sum(axis=(0, 2)) + eps).sum()
    return total


def test_calibration_makes_the_penalty_a_fraction_r_of_the_first_loss():
    model = small_cnn()
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 1, 8, 8, generator=generator), torch.randint(0, 10, (16,), generator=generator))
               for _ in range(2)]
    reference = copy.deepcopy(model)
    buffers_before = {n: b.clone() for n, b in model.named_buffers()}
    method = PruneTrain(PruneTrainParams(penalty_ratio=0.2))
    method.on_train_start(context(model, batches[0][0][:2], batches))

    images, labels = batches[0]
    ce = F.cross_entropy(reference.train()(images), labels).item()  # training-mode forward, first batch
    penalty = numpy_group_lasso(reference)
    weighted = method.penalty_weight * penalty
    assert weighted / (ce + weighted) == pytest.approx(0.2, rel=1e-5)
    assert float(method.regularizer(model).detach()) == pytest.approx(weighted, rel=1e-5)
    for name, before in buffers_before.items():  # the calibration pass leaves BN statistics alone
        assert torch.equal(dict(model.named_buffers())[name], before), name


def test_calibration_pass_restores_each_module_mode():
    model = small_cnn()
    model.eval()
    model.features.bn2.train()  # modes set per module must come back as they were, not all to one flag
    images, labels = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    method = PruneTrain()
    method.on_train_start(context(model, images[:2], [(images, labels)]))
    assert [m.training for m in model.modules()] == [m is model.features.bn2 for m in model.modules()]


def test_penalty_layers_follow_the_model_object():
    # The trainer swaps in a new subnet at each reconfiguration: the cached layer list must follow it.
    method = PruneTrain()
    first, second = small_cnn(0), small_cnn(1)
    assert float(method.penalty(first).detach()) == pytest.approx(numpy_group_lasso(first), rel=1e-6)
    assert method.penalty_layers(first) is method.penalty_layers(first)  # found once per model
    assert float(method.penalty(second).detach()) == pytest.approx(numpy_group_lasso(second), rel=1e-6)
    assert all(layer.module in set(second.modules()) for layer in method.penalty_layers(second))


def test_an_unknown_exclude_name_is_a_user_error():
    with pytest.raises(UserError, match="method.params.exclude.*conv9"):
        PruneTrain(PruneTrainParams(exclude=["features.conv9"])).penalty(small_cnn())


def test_regularizer_before_calibration_is_an_error():
    with pytest.raises(RuntimeError, match="calibrate"):
        PruneTrain().regularizer(small_cnn())


def set_small(tensor: torch.Tensor, index, value: float = 5e-5) -> None:
    """Put weights of |w| < 1e-4 (not exactly zero, alternating signs) at `index`."""
    with torch.no_grad():
        part = tensor[index]
        signs = torch.where(torch.arange(part.numel()) % 2 == 0, 1.0, -1.0).reshape(part.shape)
        tensor[index] = value * signs


def test_a_channel_goes_only_when_sparse_as_output_and_as_input():
    model = small_cnn()
    f = model.features
    # group features.conv1 (conv1 rows -> conv2 columns): 3 sparse on both sides, 5 only as output,
    # 7 only as input, 9 on both sides except one weight of 2e-4 in conv2
    set_small(f.conv1.weight, 3)
    set_small(f.conv2.weight, (slice(None), 3))
    set_small(f.conv1.weight, 5)
    set_small(f.conv2.weight, (slice(None), 7))
    set_small(f.conv1.weight, 9)
    set_small(f.conv2.weight, (slice(None), 9))
    with torch.no_grad():
        f.conv2.weight[4, 9, 1, 1] = 2e-4
    # group features.conv3 (conv3 rows -> fc columns): 10 and 11 on both sides
    for channel in (10, 11):
        set_small(f.conv3.weight, channel)
        set_small(model.fc.weight, (slice(None), channel))
    example = torch.zeros(2, 1, 8, 8)
    method = PruneTrain(PruneTrainParams(interval=2))
    ctx = context(model, example)
    assert method.on_epoch_end(0, ctx) is None  # not a reconfiguration epoch
    decision = method.on_epoch_end(1, ctx)
    keep = decision.plan.keep
    assert keep["features.conv1"] == [c for c in range(16) if c != 3]
    assert keep["features.conv2"] == list(range(32))
    assert keep["features.conv3"] == [c for c in range(64) if c not in (10, 11)]
    assert decision.info["removed"] == {"features.conv1": 1, "features.conv3": 2}


class ResidualNet(nn.Module):
    """stem -> one identity block -> mean -> fc. The residual stream is written by `stem` and `block2` and read
    by `block1` and `fc`; block1's output is an internal group."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.block1, self.bn1 = nn.Conv2d(8, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.block2, self.bn2 = nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem_bn(self.stem(x)))
        x = torch.relu(x + self.bn2(self.block2(torch.relu(self.bn1(self.block1(x))))))
        return self.fc(x.mean(dim=(2, 3)))


def test_residual_stream_keeps_the_union_of_dense_channels():
    torch.manual_seed(0)
    model = ResidualNet()
    # stream channel 2: sparse in both writers and both readers -> removed
    set_small(model.stem.weight, 2)
    set_small(model.block2.weight, 2)
    set_small(model.block1.weight, (slice(None), 2))
    set_small(model.fc.weight, (slice(None), 2))
    # stream channel 4: only the block's writer is sparse (the stem still writes it) -> kept
    set_small(model.block2.weight, 4)
    set_small(model.block1.weight, (slice(None), 4))
    set_small(model.fc.weight, (slice(None), 4))
    # stream channel 6: both writers sparse, but fc still reads it -> kept
    set_small(model.stem.weight, 6)
    set_small(model.block2.weight, 6)
    set_small(model.block1.weight, (slice(None), 6))
    # internal channel 1 of block1: block1 row and block2 column -> removed
    set_small(model.block1.weight, 1)
    set_small(model.block2.weight, (slice(None), 1))
    example = torch.zeros(2, 3, 8, 8)
    groups = channel_groups(model, example, policy="all")
    by_name = {g.name: g for g in groups}
    assert set(by_name["stem"].producers) == {"stem", "block2"}  # the stream is one group
    assert set(by_name["stem"].consumers) == {"block1", "fc"}
    decision = PruneTrain(PruneTrainParams(interval=1)).on_epoch_end(0, context(model, example, groups=groups))
    assert decision.plan.keep["stem"] == [0, 1, 3, 4, 5, 6, 7]
    assert decision.plan.keep["block1"] == [0, 2, 3, 4, 5]


def test_plans_only_shrink_and_removed_channels_do_not_count():
    model = small_cnn()
    f = model.features
    # conv1 channel 0 was removed earlier; its (non-sparse) weights stay in the supernet's bank.
    # conv2 filter 6 reads only channel 0 and conv3 does not read 6: with channel 0 gone, 6 is sparse.
    set_small(f.conv2.weight, (6, slice(1, None)))
    set_small(f.conv3.weight, (slice(None), 6))
    example = torch.zeros(2, 1, 8, 8)
    plan = ChannelPlan({"features.conv1": list(range(1, 16))})
    decision = PruneTrain(PruneTrainParams(interval=1)).on_epoch_end(0, context(model, example, plan=plan))
    assert decision.plan.keep["features.conv1"] == list(range(1, 16))  # channel 0 does not come back
    assert decision.plan.keep["features.conv2"] == [c for c in range(32) if c != 6]


def test_a_group_never_drops_below_min_channels():
    model = small_cnn()
    f = model.features
    with torch.no_grad():  # every channel of group conv1 sparse; channel c has magnitude (c + 1) * 1e-6
        scale = (torch.arange(16, dtype=torch.float32) + 1) * 1e-6
        f.conv1.weight.copy_(scale.reshape(16, 1, 1, 1).expand_as(f.conv1.weight))
        f.conv2.weight[:] = f.conv2.weight.sign() * scale.reshape(1, 16, 1, 1)
    example = torch.zeros(2, 1, 8, 8)
    decision = PruneTrain(PruneTrainParams(interval=1, min_channels=3)).on_epoch_end(0, context(model, example))
    assert decision.plan.keep["features.conv1"] == [13, 14, 15]  # the three largest groups survive


def test_short_digits_run_shrinks_and_training_flops_fall(tmp_path, digits_config):
    # To make channels go sparse within 4 short epochs: penalty ratio 0.7, reconfiguration every epoch, and a
    # zeroing threshold of 0.02 instead of the paper's 1e-4 (which needs a long run with a decayed LR).
    cfg = digits_config(4, "prunetrain", "{penalty_ratio: 0.7, interval: 1, threshold: 0.02}")
    summary = Trainer(cfg, tmp_path / "run", quiet=True).fit()
    assert summary["macs"] < summary["dense_macs"] and summary["params"] < summary["dense_params"]
    records = io.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    epochs = {r["epoch"]: r for r in records if r["kind"] == "epoch"}
    decisions = [r for r in records if r["kind"] == "decision"]
    assert decisions
    for decision in decisions:
        assert decision["macs_after"] < decision["macs_before"]
        if decision["epoch"] + 1 in epochs:
            assert epochs[decision["epoch"] + 1]["train_flops"] < epochs[decision["epoch"]]["train_flops"]
    calibration = [r for r in records if r["kind"] == "prunetrain_calibration"]
    assert len(calibration) == 1 and calibration[0]["penalty_weight"] > 0
