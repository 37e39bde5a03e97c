"""round_to: hardware in REPrune (and every PruneRegrowMethod), with injected timing tables: the kept counts lie
on the fast grids, the plan's MACs (measured on the materialized subnet) stay within those of the unrounded
plan and within a MACs target, the tables travel in the method's state, and a Trainer run goes end to end."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tests.methods.test_one_shot import small_cnn
from tests.methods.test_prune_regrow import set_distinct_gammas, small_ctx

from prunekit import io
from prunekit.channels import ChannelPlan, channel_groups, materialize
from prunekit.channels.readers import l1_group_scores
from prunekit.config import load_config
from prunekit.errors import UserError
from prunekit.measure import count_macs, width_timing
from prunekit.measure.width_timing import WidthTimer
from prunekit.methods import build_method
from prunekit.methods.base import TrainContext
from prunekit.methods.channel_dst import ChannelDST, ChannelDSTParams
from prunekit.methods.one_shot import L1FilterPruning, OneShotParams
from prunekit.methods.prune_regrow import PruneRegrowParams
from prunekit.methods.prunetrain import PruneTrain, PruneTrainParams
from prunekit.methods.reprune import REPrune
from prunekit.methods.slimming import NetworkSlimming, SlimmingParams
from prunekit.methods.torch_pruning_baseline import TorchPruningBaseline, TorchPruningParams
from prunekit.train.trainer import Trainer

BLOCK = 8


def fake_time_op(op, widths, *args, **kwargs):
    """A staircase of BLOCK channels over the op's varying dim (what oneDNN's blocking looks like)."""
    return {w: 1e-3 * math.ceil(op.dim_at(w) / BLOCK) for w in widths}


def reprune(tmp_path, **params):
    method = REPrune(PruneRegrowParams(**{"t_prune": 4, "interval": 1, "delta0": 0.3, **params}))
    method.rounding.timer = WidthTimer(16, cache_dir=tmp_path, op_timer=lambda op, w: fake_time_op(op, w))
    return method


def subnet_macs(ctx, plan):
    return count_macs(materialize(ctx.supernet, plan, ctx.groups), ctx.example_inputs[:1])


def on_grid(method, plan):
    """Every count on its group's grid, or under the grid's narrowest width (which rounding leaves alone)."""
    grids = method.rounding.grids()
    return all(len(plan.kept(g)) in grids[g.name] or len(plan.kept(g)) < grids[g.name][0] for g in method.groups)


def test_params_accept_hardware_and_reject_other_strings():
    assert PruneRegrowParams(sparsity=0.5, round_to="hardware").round_to == "hardware"
    with pytest.raises(UserError, match="round_to"):
        PruneRegrowParams(sparsity=0.5, round_to=0)
    cfg = load_config(None, ["method.name=reprune", "method.params.sparsity=0.5", "method.params.round_to=fast"])
    with pytest.raises(UserError, match="round_to"):
        build_method(cfg.method)


@pytest.mark.parametrize("params", [{"sparsity": 0.5}, {"target_macs_ratio": 0.5}])
def test_every_decision_lies_on_the_grid_within_the_unrounded_macs(tmp_path, params):
    ctx = small_ctx(policy="all")
    set_distinct_gammas(ctx.supernet)
    hardware, plain = reprune(tmp_path, round_to="hardware", **params), reprune(tmp_path, round_to=1, **params)
    decision = hardware.on_train_start(ctx)
    unrounded = plain.on_train_start(ctx)
    assert hardware.rounding.grids()["features.conv2"] == [8, 16, 24, 32]  # the staircase's step tops
    assert on_grid(hardware, decision.plan)
    assert subnet_macs(ctx, decision.plan) <= subnet_macs(ctx, unrounded.plan)
    assert decision.info["round_to"] == "hardware" and decision.info["widths_within_budget"]
    for t in range(1, 5):
        ctx.plan = decision.plan
        with torch.no_grad():  # the BN scales move between decisions, as training moves them
            for name in ("features.bn1", "features.bn2", "features.bn3"):
                bn = ctx.supernet.get_submodule(name)
                bn.weight.mul_(1 + 0.3 * torch.rand(bn.weight.shape, generator=torch.Generator().manual_seed(t)))
        decision, unrounded = hardware.decide(t, ctx), plain.decide(t, ctx)
        assert on_grid(hardware, decision.plan), t
        assert subnet_macs(ctx, decision.plan) <= subnet_macs(ctx, unrounded.plan), t
        assert decision.info["widths_within_budget"]
    if "target_macs_ratio" in params:  # the final plan meets the method's target
        dense = count_macs(ctx.supernet, ctx.example_inputs[:1])
        assert subnet_macs(ctx, decision.plan) <= 0.5 * dense


def test_tables_travel_in_the_state_so_a_resumed_run_rounds_alike(tmp_path):
    ctx = small_ctx(policy="all")
    set_distinct_gammas(ctx.supernet)
    first = reprune(tmp_path, round_to="hardware", sparsity=0.5)
    ctx.plan = first.on_train_start(ctx).plan
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint holds (JSON)
    assert "width_tables" in state
    resumed = REPrune(PruneRegrowParams(t_prune=4, interval=1, delta0=0.3, round_to="hardware", sparsity=0.5))

    def no_timing(op, widths):
        raise AssertionError("a resumed run must not time again")

    resumed.rounding.timer = WidthTimer(16, cache_dir=tmp_path / "empty", op_timer=no_timing)
    resumed.load_state_dict(state)
    resumed.on_train_start(ctx)  # resumed: ctx.plan is set, so no new plan
    assert resumed.rounding.grids() == first.rounding.grids()
    assert resumed.decide(1, ctx).plan == first.decide(1, ctx).plan


def test_trainer_run_with_hardware_widths(tmp_path, monkeypatch):
    monkeypatch.setattr(width_timing, "time_op", fake_time_op)
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))
    cfg = load_config(None, ["data.name=digits", "data.crop_padding=1", "data.flip=false", "model.name=small_cnn",
                             "train.epochs=3", "train.batch_size=64", "train.threads=1", "optim.lr=0.05",
                             "method.name=reprune", "method.params.t_prune=2", "method.params.interval=1",
                             "method.params.target_macs_ratio=0.5", "method.params.round_to=hardware",
                             "method.params.policy=all"])
    summary = Trainer(cfg, tmp_path / "run", quiet=True).fit()
    assert summary["macs"] <= 0.5 * summary["dense_macs"]
    decisions = [r for r in io.read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "decision"]
    assert len(decisions) == 3 and all(r["round_to"] == "hardware" for r in decisions)
    for record in decisions:  # the fake staircase's grid: multiples of 8 (every small_cnn width is one)
        assert all(count % BLOCK == 0 for count in record["kept"].values()), record["kept"]
    assert list((tmp_path / "cache" / "widths").glob("*.json"))


# ------------------------------------------------------------------ the other channel methods


def one_shot_ctx(policy="all", plan=None):
    model = small_cnn()
    x = torch.zeros(2, 1, 8, 8)
    return TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=5, example_inputs=x, supernet=model,
                        groups=channel_groups(model, x, policy=policy), plan=plan)


def inject(method, tmp_path):
    method.rounding.timer = WidthTimer(16, cache_dir=tmp_path, op_timer=lambda op, w: fake_time_op(op, w))
    return method


def test_l1_filter_round_to_8_keeps_the_top_l1_filters_of_the_rounded_count():
    ctx = one_shot_ctx()
    plan, _ = L1FilterPruning(OneShotParams(prune_epoch=0, rate=0.3, round_to=8)).make_plan(ctx)
    for group in ctx.groups:
        n_keep = min(group.size, -(-(group.size - int(0.3 * group.size)) // 8) * 8)  # 16->12->16, 32->23->24 ...
        norms = l1_group_scores(ctx.supernet, group).numpy()
        expected = sorted(np.argsort(-norms, kind="stable")[:n_keep].tolist())
        assert plan.keep[group.name] == expected, group.name


def test_l1_filter_macs_target_with_round_to_8_meets_it_on_multiples_of_8():
    ctx = one_shot_ctx()
    plan, info = L1FilterPruning(OneShotParams(prune_epoch=0, target_macs_ratio=0.5, round_to=8)).make_plan(ctx)
    assert info["target_macs_reached"]
    assert subnet_macs(ctx, plan) <= 0.5 * count_macs(ctx.supernet, ctx.example_inputs[:1])
    assert all(len(plan.kept(g)) % 8 == 0 for g in ctx.groups)


@pytest.mark.parametrize("params", [{"rate": 0.4}, {"target_macs_ratio": 0.5}])
def test_l1_filter_hardware_lies_on_the_grid_within_the_unrounded_macs(tmp_path, params):
    ctx = one_shot_ctx()
    method = inject(L1FilterPruning(OneShotParams(prune_epoch=0, round_to="hardware", **params)), tmp_path)
    plan, info = method.make_plan(ctx)
    unrounded, _ = L1FilterPruning(OneShotParams(prune_epoch=0, **params)).make_plan(ctx)
    assert on_grid(SimpleNamespace(rounding=method.rounding, groups=ctx.groups), plan)
    assert subnet_macs(ctx, plan) <= subnet_macs(ctx, unrounded) and info["widths_within_budget"]
    assert info.get("target_macs_reached", True)


def test_slimming_hardware_rounds_its_cut(tmp_path):
    ctx = one_shot_ctx(policy="internal")
    hardware = inject(NetworkSlimming(SlimmingParams(prune_epoch=0, percentile=0.6, round_to="hardware")), tmp_path)
    plain = NetworkSlimming(SlimmingParams(prune_epoch=0, percentile=0.6))
    plan, unrounded = hardware.on_train_start(ctx).plan, plain.on_train_start(ctx).plan
    assert plan != unrounded and on_grid(SimpleNamespace(rounding=hardware.rounding, groups=ctx.groups), plan)
    assert subnet_macs(ctx, plan) <= subnet_macs(ctx, unrounded)
    for group in ctx.groups:  # a group that keeps more keeps the unrounded cut plus the largest |gamma| others
        kept, cut = plan.kept(group), unrounded.kept(group)
        if len(kept) >= len(cut):
            assert set(cut) <= set(kept)


def test_prunetrain_round_to_8_never_brings_back_an_earlier_removal():
    model = small_cnn()
    with torch.no_grad():  # group conv1: channels 3 and 5 sparse on both sides now; 0 removed earlier
        for c in (3, 5):
            model.features.conv1.weight[c] = 5e-5
            model.features.conv2.weight[:, c] = 5e-5
    x = torch.zeros(2, 1, 8, 8)
    groups = channel_groups(model, x, policy="all")
    plan = ChannelPlan({"features.conv1": list(range(1, 16))})
    ctx = TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=5, example_inputs=x, supernet=model,
                       groups=groups, plan=plan)
    unrounded = PruneTrain(PruneTrainParams(interval=1)).plan_from_sparsity(ctx)
    assert len(unrounded.keep["features.conv1"]) == 13
    rounded = PruneTrain(PruneTrainParams(interval=1, round_to=8)).plan_from_sparsity(ctx)
    # 13 -> 16 is more than the 15 the plan had: capped at 15, so 3 and 5 come back (removed now), 0 does not
    assert rounded.keep["features.conv1"] == list(range(1, 16))
    assert rounded.keep["features.conv2"] == list(range(32))


def test_channel_dst_rounds_its_removals(tmp_path):
    ctx = one_shot_ctx(policy="internal")
    method = ChannelDST(ChannelDSTParams(sparsity=0.0, channel_every=1, channel_rate=0.3, channel_target=0.5,
                                         round_to=8))
    ctx.steps_per_epoch, ctx.epochs = 1, 10
    decision = method.on_epoch_end(0, ctx)
    assert all(len(decision.plan.kept(g)) % 8 == 0 for g in ctx.groups)
    assert any(len(decision.plan.kept(g)) < g.size for g in ctx.groups)


def test_torch_pruning_round_to_8_and_hardware(tmp_path):
    ctx = one_shot_ctx()
    plain = TorchPruningBaseline(TorchPruningParams(prune_epoch=0, pruning_ratio=0.3)).make_plan(ctx)[0]
    eight = TorchPruningBaseline(TorchPruningParams(prune_epoch=0, pruning_ratio=0.3, round_to=8)).make_plan(ctx)[0]
    for group in ctx.groups:  # int(n * 0.7) rounded up: 11 -> 16, 22 -> 24, 44 -> 48; Torch-Pruning's kept stay
        assert len(eight.kept(group)) == -(-int(group.size * 0.7) // 8) * 8
        assert set(plain.kept(group)) <= set(eight.kept(group))
    method = inject(TorchPruningBaseline(TorchPruningParams(prune_epoch=0, pruning_ratio=0.3, round_to="hardware")),
                    tmp_path)
    plan, info = method.make_plan(ctx)
    assert on_grid(SimpleNamespace(rounding=method.rounding, groups=ctx.groups), plan)
    assert subnet_macs(ctx, plan) <= subnet_macs(ctx, plain) and info["widths_within_budget"]


def test_jst_rounds_every_sample_and_the_final_plan(tmp_path):
    from tests.methods.test_jst import config as jst_config

    trainer = Trainer(jst_config("jst", "method.params.round_to=8"), tmp_path / "run", quiet=True)
    summary = trainer.fit()
    decisions = [r for r in io.read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "decision"]
    sizes = {layer.group.name: layer.group.size for layer in trainer.method.layers}
    assert len(decisions) == 5  # four samples and the final plan
    for record in decisions:
        assert all(c % 8 == 0 or c == sizes[n] for n, c in record["kept"].items()), record["kept"]
    assert decisions[-1]["target_macs_reached"] and summary["macs"] <= 0.5 * summary["dense_macs"]


@pytest.mark.parametrize("schedule", ["oneshot", "layerwise"])
def test_hrank_hardware_lies_on_the_grid_within_the_unrounded_macs(tmp_path, schedule):
    from tests.methods.test_hrank_method import batches

    from prunekit.methods.hrank import HRank, HRankParams

    def ctx_with_data(method):
        ctx = one_shot_ctx()
        data = batches()
        ctx.train_batches = lambda: iter(data)
        return ctx, method.on_train_start(ctx)

    params = {"prune_epoch": 0, "rates": 0.4, "rank_batches": 2, "schedule": schedule, "groups_per_decision": 9}
    method = inject(HRank(HRankParams(**params, round_to="hardware")), tmp_path)
    ctx, decision = ctx_with_data(method)
    _, unrounded = ctx_with_data(HRank(HRankParams(**params)))
    assert on_grid(SimpleNamespace(rounding=method.rounding, groups=ctx.groups), decision.plan)
    assert decision.info["widths_within_budget"]
    assert subnet_macs(ctx, decision.plan) <= subnet_macs(ctx, unrounded.plan)
