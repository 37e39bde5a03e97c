"""REPrune as a training method: ResNet policy, Alg. 1 on the active sub-tensor (checked with SciPy's Ward
clustering), end-to-end runs and resume."""

import re

import pytest
import torch
from scipy.cluster.hierarchy import fcluster, linkage

import prunekit.methods.reprune  # noqa: F401  (registers "reprune")
from prunekit import io
from prunekit.channels import ChannelPlan, channel_groups
from prunekit.config import load_config
from prunekit.methods import METHODS, build_method
from prunekit.methods.base import TrainContext
from prunekit.methods.prune_regrow import PruneRegrowParams
from prunekit.methods.reprune import REPrune
from prunekit.models import create_model
from prunekit.train.trainer import Trainer


def resnet_ctx(policy):
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=3)
    x = torch.zeros(2, 3, 32, 32)
    return TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=10, example_inputs=x,
                        supernet=model, groups=channel_groups(model, x, policy=policy), plan=None, seed=0)


def test_registered_and_built_from_config():
    assert METHODS.get("reprune") is REPrune
    cfg = load_config(None, ["method.name=reprune", "method.params.sparsity=0.55", "method.params.policy=all"])
    method = build_method(cfg.method)
    assert isinstance(method, REPrune) and method.channel_policy == "all" and method.params.sparsity == 0.55


def test_internal_policy_on_a_resnet_only_shrinks_basicblock_conv1():
    method = REPrune(PruneRegrowParams(sparsity=0.5, delta0=0.2, t_prune=4))
    ctx = resnet_ctx(method.channel_policy)
    ctx.plan = method.on_train_start(ctx).plan
    decision = method.decide(2, ctx)
    assert method.channel_policy == "internal"
    names = set(decision.plan.keep)
    assert len(names) == 9 and all(re.fullmatch(r"layer\d\.\d\.conv1", n) for n in names)
    assert any(len(k) < 16 for k in decision.plan.keep.values())
    # with policy "all" the residual streams are prunable too
    method_all = REPrune(PruneRegrowParams(sparsity=0.5, delta0=0.2, t_prune=4, policy="all"))
    assert {"conv1", "layer2.0.conv2", "layer3.0.conv2"} <= set(method_all.on_train_start(
        resnet_ctx("all")).plan.keep)


def small_cnn_ctx(seed=5):
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    x = torch.zeros(2, 1, 8, 8)
    groups = channel_groups(model, x, policy="internal")
    return TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=10, example_inputs=x,
                        supernet=model, groups=groups, plan=None, seed=seed)


def scipy_coverage(weight, rows, in_channels, kept):
    """Alg. 1's coverage of `kept` (filter indices) by SciPy's Ward clustering, directly: the kernels of the
    filters `rows` at the input channels `in_channels`, one cut height for the layer."""
    n_merge = len(rows) - len(kept)
    dendrograms = [linkage(weight[rows, j].reshape(len(rows), -1), method="ward") for j in in_channels]
    height = max(z[n_merge - 1, 2] for z in dendrograms)
    labels = [fcluster(z, t=height, criterion="distance") for z in dendrograms]
    kept_rows = [rows.index(c) for c in kept]
    covered = sum(len(set(channel_labels[kept_rows])) for channel_labels in labels)
    total = sum(int(channel_labels.max()) for channel_labels in labels)
    return covered / total


def test_chained_layers_are_clustered_over_the_inputs_this_decision_keeps():
    # conv1 -> conv2 -> conv3 chain. conv1 loses channels at this decision; conv2 must be clustered over the
    # conv1 channels the NEW plan keeps (hard-pruning consistency), not over those of the plan in force.
    ctx = small_cnn_ctx()
    active1 = [0, 1, 2, 4, 6, 7, 9, 11, 12, 15]
    active2 = [i for i in range(32) if i % 3 != 0]
    ctx.plan = ChannelPlan({"features.conv1": active1, "features.conv2": active2,
                            "features.conv3": list(range(64))})
    method = REPrune(PruneRegrowParams(sparsity=0.6, delta0=0.0, t_prune=4))
    decision = method.decide(4, ctx)  # delta 0: no regrowth, the plan is the selection itself
    kept1 = decision.plan.keep["features.conv1"]
    kept2 = decision.plan.keep["features.conv2"]
    kept3 = decision.plan.keep["features.conv3"]
    assert set(kept2) <= set(active2) and decision.info["regrown_total"] == 0
    assert set(kept1) < set(active1) and set(kept2) < set(active2)  # both lose channels at this decision
    assert decision.info["select_seconds"] > 0.0
    # Independent: SciPy directly, on the kernels of the ACTIVE filters at the input channels the NEW plan keeps
    model = ctx.supernet
    coverage = decision.info["coverage_rate_per_group"]
    w2 = model.get_submodule("features.conv2").weight.detach().double().numpy()
    w3 = model.get_submodule("features.conv3").weight.detach().double().numpy()
    expected2 = scipy_coverage(w2, active2, kept1, kept2)
    assert coverage["features.conv2"] == pytest.approx(expected2)
    assert coverage["features.conv3"] == pytest.approx(scipy_coverage(w3, list(range(64)), kept2, kept3))
    # the check discriminates: over the stale inputs (the plan in force) the coverage differs
    assert coverage["features.conv2"] != pytest.approx(scipy_coverage(w2, active2, active1, kept2))
    assert expected2 < 1.0  # not every cluster is covered


def test_chained_selection_equals_a_layer_by_layer_hand_computation():
    # Hand-built: decide conv1 alone, then select conv2 by Alg. 1 over conv2's weight restricted to conv1's
    # new channels (and conv3 over conv2's), with the same seeds; the method's plan must be exactly that.
    from prunekit.channels.readers import group_gammas
    from prunekit.criteria import reprune_keep, reprune_pruned_counts
    from prunekit.seeding import derived_seed

    ctx = small_cnn_ctx()
    with torch.no_grad():  # distinct BN scales, so that Eq. 8/9 allocates unevenly
        for module in ctx.supernet.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.1, 1.0)
    method = REPrune(PruneRegrowParams(sparsity=0.5, delta0=0.0, t_prune=2))
    ctx.plan = None  # the dense plan in force: every group loses channels at this decision
    decision = method.decide(2, ctx)
    names = ["features.conv1", "features.conv2", "features.conv3"]
    assert [g.name for g in method.groups] == names
    gammas = [group_gammas(ctx.supernet, g, None) for g in method.groups]
    down = reprune_pruned_counts(gammas, 0.5)
    previous = None
    for index, (group, name) in enumerate(zip(method.groups, names, strict=True)):
        weight = ctx.supernet.get_submodule(name).weight.detach().double()
        if previous is not None:
            weight = weight[:, previous]
        weight = weight.reshape(weight.shape[0], weight.shape[1], -1)
        active = list(range(group.size))
        n_keep = min(max(1, group.size - down[index]), len(active))
        kept = reprune_keep(weight, n_keep, seed=derived_seed(ctx.seed, 2, index, 0xC1), active=active).kept
        assert decision.plan.keep[name] == sorted(kept), name
        assert len(kept) < group.size
        previous = sorted(kept)


def digits_config(epochs, t_prune, interval, **params):
    sets = ["data.name=digits", "data.crop_padding=1", "data.flip=false", "model.name=small_cnn",
            f"train.epochs={epochs}", "train.batch_size=64", "train.threads=1", "optim.lr=0.05",
            "optim.nesterov=true", "method.name=reprune", f"method.params.t_prune={t_prune}",
            f"method.params.interval={interval}"] + [f"method.params.{k}={v}" for k, v in params.items()]
    return load_config(None, sets)


def test_trainer_run_reaches_half_the_dense_macs(tmp_path):
    cfg = digits_config(5, 4, 2, target_macs_ratio=0.5, delta0=0.3)
    summary = Trainer(cfg, tmp_path / "run", quiet=True).fit()
    ratio = summary["macs"] / summary["dense_macs"]
    assert 0.5 * 0.97 <= ratio <= 0.5
    decisions = [r for r in io.read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "decision"]
    assert [r["epoch"] for r in decisions] == [-1, 1, 3]
    assert decisions[1]["regrown_total"] > 0 and decisions[-1]["regrown_total"] == 0
    for key in ("layer_sparsity", "selected", "regrown", "coverage_rate", "select_seconds"):
        assert key in decisions[1], key


def test_resume_in_the_middle_of_the_schedule_matches_the_uninterrupted_run(check_exact_resume):
    cfg = digits_config(5, 4, 1, sparsity=0.5, delta0=0.3)
    # killed in epoch 3, after the decisions at t = 1 and 2 and before those still to come
    check_exact_resume(cfg, lambda steps_per_epoch: 2 * steps_per_epoch + 5)
