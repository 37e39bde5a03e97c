"""CHEX as a training method: leverage-score selection among the active filters, and an end-to-end run."""

import numpy as np
import torch

import prunekit.methods.chex  # noqa: F401  (registers "chex")
from prunekit import io
from prunekit.channels import ChannelPlan, channel_groups
from prunekit.channels.optimizer_state import zero_channel_state_
from prunekit.config import load_config
from prunekit.methods import METHODS, build_method
from prunekit.methods.base import TrainContext
from prunekit.methods.chex import CHEX
from prunekit.methods.prune_regrow import PruneRegrowParams, regrown_channels
from prunekit.models import create_model
from prunekit.train.trainer import Trainer


def test_registered_and_built_from_config():
    assert METHODS.get("chex") is CHEX
    cfg = load_config(None, ["method.name=chex", "method.params.target_macs_ratio=0.25", "method.params.round_to=8"])
    method = build_method(cfg.method)
    assert isinstance(method, CHEX) and method.params.target_macs_ratio == 0.25 and method.params.round_to == 8


def test_selection_keeps_the_top_leverage_active_filters():
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1, widths=(16, 24, 32))
    x = torch.zeros(2, 1, 8, 8)
    groups = channel_groups(model, x, policy="internal")
    active1 = [1, 2, 3, 5, 8, 9, 10, 13]
    active2 = list(range(0, 24, 2)) + [5, 7]
    ctx = TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=10, example_inputs=x,
                       supernet=model, groups=groups, plan=None, seed=0)
    ctx.plan = ChannelPlan({"features.conv1": active1, "features.conv2": sorted(active2),
                            "features.conv3": list(range(32))})
    decision = CHEX(PruneRegrowParams(sparsity=0.7, delta0=0.0, t_prune=2)).decide(2, ctx)
    kept = decision.plan.keep["features.conv2"]
    # independent: leverage scores of the active filters from numpy's SVD, over the conv1 channels that this
    # same decision keeps (conv1 loses some now; its removed inputs would be zero columns under CHEX's masks)
    kept1 = decision.plan.keep["features.conv1"]
    assert set(kept1) < set(active1)
    active2 = sorted(active2)
    weight = model.get_submodule("features.conv2").weight.detach().double()[active2][:, kept1]
    matrix = weight.reshape(len(active2), -1).numpy().T  # d x C, one column per filter (CHEX's X)
    k = len(kept)
    _, _, vt = np.linalg.svd(matrix, full_matrices=False)
    leverage = (vt[:k] ** 2).sum(axis=0)
    expected = sorted(active2[i] for i in np.argsort(-leverage, kind="stable")[:k])
    assert kept == expected
    assert "coverage_rate" not in decision.info and decision.info["regrown_total"] == 0


def test_trainer_run_with_chex_reaches_the_macs_target(tmp_path):
    sets = ["data.name=digits", "data.crop_padding=1", "data.flip=false", "model.name=small_cnn",
            "train.epochs=4", "train.batch_size=64", "train.threads=1", "optim.lr=0.05", "method.name=chex",
            "method.params.target_macs_ratio=0.5", "method.params.t_prune=4", "method.params.interval=2",
            "method.params.delta0=0.3"]
    summary = Trainer(load_config(None, sets), tmp_path / "run", quiet=True).fit()
    assert 0.5 * 0.97 <= summary["macs"] / summary["dense_macs"] <= 0.5
    decisions = [r for r in io.read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "decision"]
    assert [r["epoch"] for r in decisions] == [-1, 1, 3] and decisions[-1]["final"]


def test_zero_channel_state_zeroes_every_position_of_the_given_channels_only():
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    groups = channel_groups(model, torch.zeros(2, 1, 8, 8), policy="internal")
    generator = torch.Generator().manual_seed(1)
    state = {n: {"momentum_buffer": torch.randn(p.shape, generator=generator), "step": torch.tensor(3.0)}
             for n, p in model.named_parameters()}
    expected = {n: {k: v.clone() for k, v in e.items()} for n, e in state.items()}
    # by hand: conv1's channels 2 and 5 are conv1's output rows, its bias, bn1's scale and shift, and conv2's
    # input columns; conv3's channel 0 likewise (its consumer is the classifier after global pooling)
    for name in ("features.conv1.weight", "features.conv1.bias", "features.bn1.weight", "features.bn1.bias"):
        if name in expected:
            expected[name]["momentum_buffer"][[2, 5]] = 0
    expected["features.conv2.weight"]["momentum_buffer"][:, [2, 5]] = 0
    for name in ("features.conv3.weight", "features.conv3.bias", "features.bn3.weight", "features.bn3.bias"):
        if name in expected:
            expected[name]["momentum_buffer"][0] = 0
    consumer = next(g for g in groups if g.name == "features.conv3").consumers[0]
    expected[f"{consumer}.weight"]["momentum_buffer"][:, 0] = 0
    zeroed = zero_channel_state_(state, groups, {"features.conv1": [2, 5], "features.conv3": [0]})
    for name in state:
        assert torch.equal(state[name]["momentum_buffer"], expected[name]["momentum_buffer"]), name
        assert state[name]["step"] == 3.0
    assert zeroed == sum(int((e["momentum_buffer"] == 0).sum()) for e in expected.values())  # no overlaps here


def test_regrown_channels_are_those_the_old_plan_had_removed():
    groups = channel_groups(create_model("small_cnn", num_classes=10, in_channels=1), torch.zeros(2, 1, 8, 8),
                            policy="internal")
    old = ChannelPlan({"features.conv1": [0, 1, 2, 3], "features.conv2": list(range(32))})
    new = ChannelPlan({"features.conv1": [1, 2, 6, 9], "features.conv2": list(range(0, 32, 2))})
    assert regrown_channels(old, new, groups) == {"features.conv1": [6, 9]}  # conv2 only lost, conv3 untouched
    assert regrown_channels(None, new, groups) == {}


def test_regrow_momentum_zero_clears_regrown_channels_state(tmp_path, monkeypatch):
    """Decision.reset_channels: SupernetState.apply_plan zeroes the bank at the regrown channels between absorbing
    the subnet's state and slicing it for the new plan; watched at slice_optimizer_state's call."""
    from prunekit.train import supernet as supernet_module

    seen: list[dict] = []
    pending: dict = {}
    original_apply, original_slice = supernet_module.SupernetState.apply, supernet_module.slice_optimizer_state

    def apply(self, decision):
        pending["reset"] = decision.reset_channels if decision is not None else None
        return original_apply(self, decision)

    def slice_state(bank, supernet, plan, groups):
        sliced = original_slice(bank, supernet, plan, groups)
        seen.append({"reset": pending.get("reset"), "plan": plan, "sliced": sliced, "groups": groups})
        return sliced

    monkeypatch.setattr(supernet_module.SupernetState, "apply", apply)
    monkeypatch.setattr(supernet_module, "slice_optimizer_state", slice_state)
    sets = ["data.name=digits", "data.crop_padding=1", "data.flip=false", "model.name=small_cnn",
            "train.epochs=4", "train.batch_size=64", "train.threads=1", "optim.lr=0.05", "optim.momentum=0.9",
            "method.name=chex", "method.params.sparsity=0.5", "method.params.t_prune=4", "method.params.interval=2",
            "method.params.delta0=0.3", "method.params.regrow_momentum=zero"]
    Trainer(load_config(None, sets), tmp_path / "run", quiet=True).fit()
    decisions = [r for r in io.read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "decision"]
    assert decisions[1]["momentum_reset"] > 0
    with_reset = [s for s in seen if s["reset"]]
    assert with_reset
    for entry in with_reset:
        groups = {g.name: g for g in entry["groups"]}
        for name, channels in entry["reset"].items():
            kept = entry["plan"].keep[name]
            rows = [kept.index(c) for c in channels]  # the regrown channels' rows in the new subnet
            others = [i for i in range(len(kept)) if i not in rows]
            momentum = entry["sliced"][f"{groups[name].producers[0]}.weight"]["momentum_buffer"]
            assert torch.count_nonzero(momentum[rows]) == 0
            assert torch.count_nonzero(momentum[others]) > 0  # kept channels keep their momentum
