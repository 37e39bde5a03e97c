"""The prune-and-regrow schedule shared by REPrune and CHEX, checked against independent computations."""

import copy
import json
import math

import numpy as np
import pytest
import torch

import prunekit.methods.chex  # noqa: F401  (registers "chex")
from prunekit.channels import absorb, channel_groups, materialize
from prunekit.errors import UserError
from prunekit.measure import count_macs
from prunekit.methods.base import TrainContext
from prunekit.methods.chex import CHEX
from prunekit.methods.prune_regrow import (
    PruneRegrowParams,
    is_decision_epoch,
)
from prunekit.models import create_model

BNS = ["features.bn1", "features.bn2", "features.bn3"]
CONVS = ["features.conv1", "features.conv2", "features.conv3"]


def small_ctx(seed=0, policy="internal"):
    torch.manual_seed(seed)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    x = torch.zeros(2, 1, 8, 8)
    groups = channel_groups(model, x, policy=policy)
    return TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=200, example_inputs=x,
                        supernet=model, groups=groups, plan=None, seed=seed)


def chex(**kwargs):
    return CHEX(PruneRegrowParams(**kwargs))


def set_distinct_gammas(model, seed=1):
    """Distinct positive BN scales, so Eq. 8/9 has no ties."""
    rng = np.random.default_rng(seed)
    values = rng.permutation(np.arange(1, 16 + 32 + 64 + 1)) / 100.0
    start = 0
    with torch.no_grad():
        for name in BNS:
            bn = model.get_submodule(name)
            n = bn.weight.numel()
            bn.weight.copy_(torch.tensor(values[start:start + n], dtype=torch.float32))
            start += n


@pytest.mark.parametrize("t_prune, interval", [(8, 2), (7, 2), (5, 1), (9, 3)])
def test_schedule_decides_every_interval_up_to_t_prune_and_never_after(t_prune, interval):
    ctx = small_ctx()
    method = chex(sparsity=0.5, t_prune=t_prune, interval=interval, delta0=0.2)
    ctx.plan = method.on_train_start(ctx).plan
    decided = []
    for epoch in range(12):
        decision = method.on_epoch_end(epoch, ctx)
        if decision is not None:
            decided.append(epoch + 1)
            ctx.plan = decision.plan
    expected = sorted({t for t in range(1, 13) if t % interval == 0 and t <= t_prune} | {t_prune})
    assert decided == expected
    assert [t for t in range(1, 13) if is_decision_epoch(t, t_prune, interval)] == expected
    assert method.state_dict() == {"decided": expected}


def test_initial_plan_is_uniform_l1_prune_at_target_minus_delta0():
    ctx = small_ctx()
    decision = chex(sparsity=0.6, delta0=0.25, t_prune=10).on_train_start(ctx)
    for conv in CONVS:
        weight = ctx.supernet.get_submodule(conv).weight.detach()
        n = weight.shape[0]
        norms = weight.abs().sum(dim=(1, 2, 3)).numpy()
        n_keep = int(n * (1 - (0.6 - 0.25)))  # CHEX's int(C (1 - r)): 16 -> 10, 32 -> 20, 64 -> 41
        assert n_keep == {16: 10, 32: 20, 64: 41}[n]
        expected = sorted(np.argsort(-norms, kind="stable")[:n_keep].tolist())
        assert decision.plan.keep[conv] == expected


def test_regrowth_counts_follow_cosine_delta_and_global_bn_quantile():
    ctx = small_ctx()
    set_distinct_gammas(ctx.supernet)
    target, delta0, t, t_prune = 0.5, 0.4, 3, 10
    method = chex(sparsity=target, delta0=delta0, t_prune=t_prune)
    decision = method.decide(t, ctx)  # plan None: everything active
    delta = delta0 * (1 + math.cos(math.pi * t / t_prune)) / 2
    gammas = {bn: ctx.supernet.get_submodule(bn).weight.detach().abs().numpy() for bn in BNS}
    everything = np.sort(np.concatenate(list(gammas.values())))
    total = everything.size

    def pruned(bn, sparsity):
        k = math.ceil(sparsity * total)
        return int((gammas[bn] <= everything[k - 1]).sum()) if k else 0

    assert decision.info["delta"] == pytest.approx(delta)
    for conv, bn in zip(CONVS, BNS, strict=True):
        n = gammas[bn].size
        down, up = pruned(bn, target), pruned(bn, target - delta)
        assert decision.info["selected"][conv] == n - down
        assert decision.info["regrown"][conv] == down - up
        assert len(decision.plan.keep[conv]) == n - up
        assert decision.info["layer_sparsity"][conv] == pytest.approx(down / n)
    # the final decision (t = T_prune) regrows nothing
    final = method.decide(t_prune, ctx)
    assert final.info["regrown_total"] == 0 and final.info["delta"] == 0.0


def test_regrown_channels_return_with_their_most_recently_used_values():
    ctx = small_ctx()
    method = chex(sparsity=0.6, delta0=0.1, t_prune=100)
    plan0 = method.on_train_start(ctx).plan
    saved = copy.deepcopy(ctx.supernet.state_dict())
    # train the subnet a little and write it back: kept channels move, removed ones keep their values
    subnet = materialize(ctx.supernet, plan0, ctx.groups)
    opt = torch.optim.SGD(subnet.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        x, y = torch.randn(16, 1, 8, 8, generator=gen), torch.randint(0, 10, (16,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(subnet(x), y).backward()
        opt.step()
    absorb(subnet, ctx.supernet, plan0, ctx.groups)
    ctx.plan = plan0
    plan1 = method.decide(1, ctx).plan
    sub1 = materialize(ctx.supernet, plan1, ctx.groups)
    returned = 0
    for index, (conv, bn) in enumerate(zip(CONVS, BNS, strict=True)):
        back = sorted(set(plan1.keep[conv]) - set(plan0.keep[conv]))
        inputs = list(range(1)) if index == 0 else plan1.keep[CONVS[index - 1]]
        for channel in back:
            row = plan1.keep[conv].index(channel)
            expected_row = saved[f"{conv}.weight"][channel][inputs]
            assert torch.equal(sub1.get_submodule(conv).weight[row].detach(), expected_row)
            for tensor in ("weight", "bias", "running_mean", "running_var"):
                value = getattr(sub1.get_submodule(bn), tensor)[row]
                assert torch.equal(value.detach(), saved[f"{bn}.{tensor}"][channel]), (bn, tensor)
            returned += 1
    assert returned > 0  # some channels pruned by plan0 came back


def test_decisions_are_deterministic_for_a_seed():
    plans = []
    for _ in range(2):
        ctx = small_ctx(seed=3)
        method = chex(sparsity=0.5, delta0=0.3, t_prune=10)
        ctx.plan = method.on_train_start(ctx).plan
        plans.append(method.decide(2, ctx).plan.keep)
    assert plans[0] == plans[1]


def test_macs_target_round_to_and_min_channels_shape_the_final_plan():
    ctx = small_ctx()
    method = chex(target_macs_ratio=0.5, delta0=0.2, t_prune=4, round_to=8, min_channels=8)
    ctx.plan = method.on_train_start(ctx).plan
    final = method.decide(4, ctx)
    counts = [len(final.plan.keep[c]) for c in CONVS]
    assert all(n % 8 == 0 and n >= 8 for n in counts)
    dense = count_macs(ctx.supernet, ctx.example_inputs)
    macs = count_macs(materialize(ctx.supernet, final.plan, ctx.groups), ctx.example_inputs)
    assert macs <= 0.5 * dense and final.info["planned_macs"] == macs


@pytest.mark.parametrize("params", [
    {}, {"sparsity": 0.5, "target_macs_ratio": 0.5}, {"sparsity": 1.0}, {"sparsity": 0.5, "interval": 0},
    {"target_macs_ratio": 0.0}, {"sparsity": 0.5, "min_channels": 0}, {"sparsity": 0.5, "t_prune": 0},
])
def test_bad_parameters_are_user_errors(params):
    with pytest.raises(UserError):
        chex(**params)


def test_t_prune_beyond_the_run_is_a_user_error_and_state_is_json():
    ctx = small_ctx()
    ctx.epochs = 5
    with pytest.raises(UserError, match="t_prune"):
        chex(sparsity=0.5, t_prune=6).on_train_start(ctx)
    method = chex(sparsity=0.5, t_prune=5)
    ctx.plan = method.on_train_start(ctx).plan
    method.on_epoch_end(1, ctx)
    restored = chex(sparsity=0.5, t_prune=5)
    restored.load_state_dict(json.loads(json.dumps(method.state_dict())))
    assert restored.state_dict() == {"decided": [2]}


@pytest.mark.parametrize("method_name", ["reprune", "chex"])
def test_a_group_allocated_full_sparsity_keeps_its_largest_l1_filters(method_name):
    """s^l = 1 (Alg. 2 line 11): no clustering or leverage scores; the min_channels largest-L1 filters stay."""
    import prunekit.methods.reprune  # noqa: F401  (registers "reprune")
    from prunekit.config import MethodConfig
    from prunekit.methods import build_method

    ctx = small_ctx()
    values = {"features.bn1": torch.linspace(0.01, 0.02, 16), "features.bn2": torch.linspace(0.5, 0.8, 32),
              "features.bn3": torch.linspace(0.3, 0.9, 64)}
    with torch.no_grad():
        for name, gamma in values.items():
            ctx.supernet.get_submodule(name).weight.copy_(gamma)
    # target 0.2 of 112 channels prunes the 23 smallest scales: all 16 of bn1 and 7 of bn3
    method = build_method(MethodConfig(name=method_name, params={"sparsity": 0.2, "t_prune": 4, "interval": 2,
                                                                  "min_channels": 3}))
    decision = method.decide(4, ctx)  # t = T_prune: delta 0, no regrowth
    l1 = ctx.supernet.get_submodule("features.conv1").weight.detach().abs().sum(dim=(1, 2, 3))
    expected = sorted(torch.argsort(l1, descending=True)[:3].tolist())
    assert decision.info["layer_sparsity"]["features.conv1"] == 1.0
    assert decision.info["fully_pruned"] == ["features.conv1"]
    assert decision.plan.keep["features.conv1"] == expected
    assert len(decision.plan.keep["features.conv3"]) == 64 - 7


# ---------------------------------------------------------------- dependency order within a decision


def zoo_groups(name, policy):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "channels"))
    import zoo

    torch.manual_seed(0)
    model = getattr(zoo, name)()
    return model, channel_groups(model, torch.zeros(2, 3, 8, 8), policy=policy)


def test_dependency_order_puts_a_chain_in_order_whatever_order_it_is_given():
    from prunekit.channels.readers import dependency_order, filter_inputs

    model, groups = zoo_groups("TinyVGG", "internal")
    names = [g.name for g in groups]
    assert names == ["features.0", "features.4", "features.8", "classifier.0"]  # hand-read from TinyVGG
    feeds = filter_inputs(groups, model)
    assert feeds == {"features.0": set(), "features.4": {"features.0"}, "features.8": {"features.4"},
                     "classifier.0": {"features.8"}}
    reversed_groups = groups[::-1]
    assert [reversed_groups[i].name for i in dependency_order(reversed_groups, model)] == names


def test_dependency_order_follows_bottleneck_chains_and_breaks_residual_cycles():
    from prunekit.channels.readers import dependency_order, filter_inputs

    model, groups = zoo_groups("BottleneckNet", "internal")
    feeds = filter_inputs(groups, model)
    # conv1 -> conv2 inside each Bottleneck; the stem feeds the first block (its shortcut is a conv), the
    # second block's conv1 reads the residual stream, which policy "internal" does not prune
    assert feeds["layer1.0.conv2"] == {"layer1.0.conv1"} and feeds["layer1.0.conv1"] == {"conv1"}
    assert feeds["layer1.1.conv1"] == set()
    order = [groups[::-1][i].name for i in dependency_order(groups[::-1], model)]
    assert order.index("layer1.0.conv1") < order.index("layer1.0.conv2")
    assert order.index("layer1.1.conv1") < order.index("layer1.1.conv2")
    # policy "all": the streams feed conv1s and are written by conv3s that read conv2s: a cycle, broken once
    model, groups = zoo_groups("BottleneckNet", "all")
    order = dependency_order(groups, model)
    assert sorted(order) == list(range(len(groups)))
    feeds = filter_inputs(groups, model)
    position = {groups[i].name: k for k, i in enumerate(order)}
    late = [(g, f) for g in feeds for f in feeds[g] if position[f] > position[g]]
    assert late  # a cycle: some group comes before one of its inputs, and still every group is decided once
    assert position["layer1.1.conv1"] < position["layer1.1.conv2"]
