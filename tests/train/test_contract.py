"""The training contract end to end: a toy method that changes weight masks in on_step_end while a channel plan is
in force (and changes the plan at an epoch end), owns a trainable parameter with its own optimizer and a tensor
of state; killed mid-epoch and resumed, it ends bitwise equal to the uninterrupted run."""

import dataclasses

import pytest
import torch
from torch import nn

from prunekit import io
from prunekit.channels import ChannelPlan
from prunekit.config import load_config
from prunekit.methods import METHODS
from prunekit.methods.base import ChannelContext, Decision, Method
from prunekit.train.trainer import Trainer


@dataclasses.dataclass
class ToyParams:
    """No parameters."""


class ContractToy(Method):
    """Prunes features.conv2 to its even channels at the start, draws new 50% masks of every conv weight of the
    trained model every 3 steps, regrows three channels after the second epoch, and trains `alpha` (Adam) through
    a regularizer."""

    name = "contract_toy"
    channel_policy = "internal"
    Params = ToyParams

    def __init__(self, params=None):
        self.alpha: nn.Parameter | None = None
        self.running = torch.zeros(())
        self.models_seen: list[nn.Module] = []

    def on_train_start(self, ctx):
        assert isinstance(ctx, ChannelContext) and ctx.supernet is not None and ctx.groups
        if self.alpha is None:
            self.alpha = nn.Parameter(torch.tensor(0.5))
        if ctx.plan is None:
            return Decision(plan=ChannelPlan({"features.conv2": list(range(0, 32, 2))}))
        return None

    def method_parameters(self):
        return {"alpha": self.alpha}

    def make_method_optimizer(self, params):
        return torch.optim.Adam(params, lr=0.05)

    def regularizer(self, model):
        return 1e-2 * self.alpha ** 2 * model.fc.weight.pow(2).sum()

    def after_step(self, model):
        self.running = self.running + model.fc.weight.detach().abs().mean()

    def on_step_end(self, step, ctx):
        if step % 3:
            return None
        g = torch.Generator().manual_seed(step)
        masks = {name: torch.rand(p.shape, generator=g) < 0.5
                 for name, p in ctx.model.named_parameters() if p.ndim == 4}
        return Decision(masks=masks, info={"toy": step})

    def on_epoch_end(self, epoch, ctx):
        if epoch == 1:
            return Decision(plan=ChannelPlan({"features.conv2": sorted([*range(0, 32, 2), 1, 3, 5])}))
        return None

    def on_model_changed(self, model):
        self.models_seen.append(model)

    def state_tensors(self):
        return {"running": self.running}

    def load_state_tensors(self, tensors):
        self.running = tensors["running"].clone()


@pytest.fixture(autouse=True)
def toy_method_registered():
    """The toy is registered only while these tests run (the method catalog's tests check every registered
    method for docs)."""
    METHODS.register("contract_toy")(ContractToy)
    try:
        yield
    finally:
        METHODS._entries.pop("contract_toy", None)  # the registry has no public removal: tests only


class Interrupt(Exception):
    pass


def config():
    return load_config(None, [
        "data.name=synthetic", "data.synthetic_size=192", "data.synthetic_shape=[3, 16, 16]",
        "model.name=small_cnn", "train.epochs=3", "train.batch_size=32", "train.threads=1", "optim.lr=0.05",
        "method.name=contract_toy", "train.checkpoint_every_steps=2", "train.keep_checkpoints=['4it']"])


def test_toy_method_with_masks_and_plan_resumes_mid_epoch_bitwise(tmp_path):
    full = Trainer(config(), tmp_path / "full", quiet=True)
    full.fit()

    def kill(step):
        if step == 6 + 5:  # mid second epoch; the last checkpoint is at step 10
            raise Interrupt

    with pytest.raises(Interrupt):
        Trainer(config(), tmp_path / "cut", quiet=True, on_step=kill).fit()
    assert io.read_json(tmp_path / "cut" / "checkpoints" / "latest.json")["step"] == 10
    resumed = Trainer.resume(tmp_path / "cut", quiet=True)
    resumed.fit()

    for name in ("model.safetensors", "masks.safetensors"):
        a, b = io.load_tensors(tmp_path / "full" / "model" / name), io.load_tensors(tmp_path / "cut" / "model" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    assert torch.equal(full.method.alpha, resumed.method.alpha)
    assert full.method.alpha.item() != 0.5  # alpha trained
    assert torch.equal(full.method.running, resumed.method.running)
    times = {"epoch_time_s", "data_time_s", "select_seconds"}
    strip = lambda rs: [{k: v for k, v in r.items() if k not in times} for r in rs]  # noqa: E731
    assert strip(io.read_jsonl(tmp_path / "full" / "metrics.jsonl")) == \
        strip(io.read_jsonl(tmp_path / "cut" / "metrics.jsonl"))

    # masks and plan composed: the final subnet has the regrown width, and its masked weights are exactly zero
    model, masks = full.state.model, full.state.model_masks
    assert model.features.conv2.out_channels == 19
    for name, param in model.named_parameters():
        if name in masks:
            assert param.shape == masks[name].shape and torch.all(param[~masks[name]] == 0)
    # every replacement of the trained module was announced, the last one being the final model
    assert full.method.models_seen[-1] is model
    decisions = [r for r in io.read_jsonl(tmp_path / "full" / "metrics.jsonl") if r["kind"] == "decision"]
    assert [r["step"] for r in decisions if r["at"] == "step"] == [3, 6, 9, 12, 15, 18]
    assert [r["at"] for r in decisions].count("epoch") == 1
    # a checkpoint kept by name survives the rolling clean-up
    assert (tmp_path / "full" / "checkpoints" / "step-000000004").is_dir()


def test_supernet_holds_masks_of_pruned_channels_across_a_regrowth():
    """Masks of removed channels are kept full-width: after regrowth, the regrown channels get their old masks."""
    from prunekit.models import create_model
    from prunekit.train.supernet import SupernetState

    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=3)
    state = SupernetState(model, torch.zeros(2, 3, 16, 16), "internal",
                          make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9))
    full_mask = torch.rand(32, 16, 3, 3, generator=torch.Generator().manual_seed(3)) < 0.5
    state.apply(Decision(masks={"features.conv2.weight": full_mask}))
    state.apply(Decision(plan=ChannelPlan({"features.conv2": [0, 2, 4]})))
    assert torch.equal(state.model_masks["features.conv2.weight"].cpu(), full_mask[[0, 2, 4]])
    sub_mask = torch.ones(3, 16, 3, 3, dtype=torch.bool)
    state.apply(Decision(masks={"features.conv2.weight": sub_mask}))  # subnet coordinates
    state.sync()
    state.apply(Decision(plan=ChannelPlan({"features.conv2": [0, 1, 2, 4]})))
    got = state.model_masks["features.conv2.weight"].cpu()
    assert torch.equal(got[[0, 2, 3]], sub_mask)  # kept channels: the subnet's new masks
    assert torch.equal(got[1], full_mask[1])  # regrown channel: the mask it had
    assert torch.all(state.model.features.conv2.weight[~got.to(state.model.features.conv2.weight.device)] == 0)


def test_a_run_started_from_a_kept_checkpoint_continues_the_original_run_exactly(tmp_path):
    """StartPoint (weights, optimizer state, step k) from the checkpoint kept at step k: the rest of the run follows
    the same learning rates and batches, so it ends with the original run's weights."""
    from prunekit.train import checkpoint as ckpt
    from prunekit.train.trainer import StartPoint

    sets = ["data.name=synthetic", "data.synthetic_size=192", "data.synthetic_shape=[3, 16, 16]",
            "model.name=small_cnn", "train.epochs=2", "train.batch_size=32", "train.threads=1",
            "optim.lr=0.05", "train.keep_checkpoints=['4it']"]
    Trainer(load_config(None, sets), tmp_path / "full", quiet=True).fit()
    kept = ckpt.load_checkpoint(tmp_path / "full" / "checkpoints", name="4it")
    start = StartPoint(weights=kept.model, optimizer=kept.optimizer, step=kept.step)
    Trainer(load_config(None, sets), tmp_path / "rewound", quiet=True, start=start).fit()
    a = io.load_tensors(tmp_path / "full" / "model" / "model.safetensors")
    b = io.load_tensors(tmp_path / "rewound" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    epochs = [r for r in io.read_jsonl(tmp_path / "rewound" / "metrics.jsonl") if r["kind"] == "epoch"]
    assert [r["step"] for r in epochs] == [6, 12]


def test_a_run_can_start_from_a_channel_plan(tmp_path):
    """StartPoint(plan=...): the first step already trains the physically smaller subnet (a structured ticket)."""
    from prunekit.train.trainer import StartPoint

    sets = ["data.name=synthetic", "data.synthetic_size=64", "data.synthetic_shape=[3, 16, 16]",
            "model.name=small_cnn", "train.epochs=1", "train.batch_size=32", "train.threads=1",
            "method.name=l1_filter", "method.params.prune_epoch=1", "method.params.rate=0.0"]
    start = StartPoint(plan=ChannelPlan({"features.conv2": list(range(8))}))
    trainer = Trainer(load_config(None, sets), tmp_path / "run", quiet=True, start=start)
    trainer.fit()
    first = next(r for r in io.read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "epoch")
    assert trainer.state.model.features.conv2.out_channels == 8
    assert first["macs"] < io.read_json(tmp_path / "run" / "summary.json")["dense_macs"]
