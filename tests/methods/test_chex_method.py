"""CHEX as a training method: leverage-score selection among the active filters, and an end-to-end run."""

import numpy as np
import torch

import prunekit.methods.chex  # noqa: F401  (registers "chex")
from prunekit import io
from prunekit.channels import ChannelPlan, channel_groups
from prunekit.config import load_config
from prunekit.methods import METHODS, build_method
from prunekit.methods.base import TrainContext
from prunekit.methods.chex import CHEX
from prunekit.methods.prune_regrow import PruneRegrowParams
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
