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


def test_selection_clusters_only_active_filters_and_active_input_channels():
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    x = torch.zeros(2, 1, 8, 8)
    groups = channel_groups(model, x, policy="internal")
    ctx = TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=10, example_inputs=x,
                       supernet=model, groups=groups, plan=None, seed=5)
    active1 = [0, 1, 2, 4, 6, 7, 9, 11, 12, 15]
    active2 = [i for i in range(32) if i % 3 != 0]
    ctx.plan = ChannelPlan({"features.conv1": active1, "features.conv2": active2,
                            "features.conv3": list(range(64))})
    method = REPrune(PruneRegrowParams(sparsity=0.6, delta0=0.0, t_prune=4))
    decision = method.decide(4, ctx)  # delta 0: no regrowth, the plan is the selection itself
    kept2 = decision.plan.keep["features.conv2"]
    assert set(kept2) <= set(active2) and decision.info["regrown_total"] == 0
    assert decision.info["select_seconds"] > 0.0
    # Independent: Alg. 1's clusters by SciPy directly, on the kernels of the ACTIVE filters at the ACTIVE input
    # channels only (the supernet still holds values at the removed ones), and the coverage of what was kept.
    weight = model.get_submodule("features.conv2").weight.detach().double().numpy()
    n_merge = len(active2) - len(kept2)
    dendrograms = [linkage(weight[active2, j].reshape(len(active2), -1), method="ward") for j in active1]
    height = max(z[n_merge - 1, 2] for z in dendrograms)
    labels = [fcluster(z, t=height, criterion="distance") for z in dendrograms]
    kept_rows = [active2.index(c) for c in kept2]
    covered = sum(len(set(channel_labels[kept_rows])) for channel_labels in labels)
    total = sum(int(channel_labels.max()) for channel_labels in labels)
    assert decision.info["coverage_rate_per_group"]["features.conv2"] == pytest.approx(covered / total)
    assert covered / total < 1.0  # the check can fail: not every cluster is covered


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
