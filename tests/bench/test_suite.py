"""Suites: the budget goes where the method takes it, an entry's params win over it, presets give the method
section only, every config is validated before anything is written; the committed suites resolve."""

from pathlib import Path

import pytest
import yaml

from prunekit.bench.suite import load_suite, resolve_runs
from prunekit.config import load_config
from prunekit.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
BASE = {"name": "base", "data": {"name": "synthetic", "synthetic_size": 64, "synthetic_shape": [3, 8, 8]},
        "model": {"name": "small_cnn"}, "train": {"epochs": 3, "batch_size": 32}}


def write_suite(tmp_path, **suite):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "l1.yaml").write_text(yaml.safe_dump({**BASE, "method": {
        "name": "l1_filter", "params": {"prune_epoch": 1, "rate": 0.3, "min_channels": 2}}}))
    content = {"name": "s", "base": "base.yaml", "seeds": [0, 1], **suite}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(content))
    return tmp_path / "suite.yaml"


def resolve(path, out):
    suite, root = load_suite(path)
    return resolve_runs(suite, root, out)


def test_runs_budget_presets_and_overrides(tmp_path):
    path = write_suite(tmp_path, budget={"target_macs_ratio": 0.6}, set=["train.threads=1"], methods=[
        {"name": "dense"},
        {"name": "reprune", "params": {"t_prune": 2, "interval": 1}},
        {"label": "reprune-70", "name": "reprune", "params": {"t_prune": 2, "target_macs_ratio": 0.7}},
        {"name": "slimming", "params": {"prune_epoch": 1, "percentile": 0.3}},
        {"preset": "l1.yaml", "use_budget": False},
        {"label": "l1-budget", "preset": "l1.yaml", "params": {"rate": None}, "set": ["train.epochs=2"]},
    ])
    specs = resolve(path, tmp_path / "out")
    by_key = {s.key: s for s in specs}
    assert len(specs) == 12 and list(by_key)[:2] == ["dense/seed-0", "dense/seed-1"]
    assert by_key["reprune/seed-1"].config.method.params == {"target_macs_ratio": 0.6, "t_prune": 2, "interval": 1}
    assert by_key["reprune/seed-1"].budget_keys == ["target_macs_ratio"]
    assert by_key["reprune-70/seed-0"].config.method.params["target_macs_ratio"] == 0.7  # the entry wins
    assert by_key["reprune-70/seed-0"].budget_keys == []
    assert "target_macs_ratio" not in by_key["slimming/seed-0"].config.method.params  # slimming has no such field
    assert by_key["l1_filter/seed-0"].config.method.params == {"prune_epoch": 1, "rate": 0.3, "min_channels": 2}
    l1b = by_key["l1-budget/seed-1"].config
    assert l1b.method.params == {"prune_epoch": 1, "rate": None, "min_channels": 2, "target_macs_ratio": 0.6}
    assert l1b.train.epochs == 2 and by_key["dense/seed-0"].config.train.epochs == 3
    for s in specs:
        assert s.config.train.seed == s.seed and s.config.train.threads == 1
        assert s.run_dir == tmp_path / "out" / s.label / f"seed-{s.seed}"
        assert s.config.name == f"s-{s.label}"
        assert s.config.data == by_key["dense/seed-0"].config.data  # only the method (and seed) differ


@pytest.mark.parametrize("suite, message", [
    ({"methods": []}, "at least one entry"),
    ({"seeds": [1, 1], "methods": [{"name": "dense"}]}, "distinct"),
    ({"methods": [{"name": "dense"}, {"name": "dense"}]}, "appears twice"),
    ({"methods": [{"label": "x", "name": "dense"}]}, "reference 'dense' is not one of"),
    ({"methods": [{"name": "dense"}, {"name": "reprune", "preset": "l1.yaml"}]}, "drop 'name'"),
    ({"methods": [{"name": "dense"}, {"name": "reprune", "params": {"t_prune": 2}}]}, "exactly one of"),
    ({"methods": [{"name": "dense"}, {"name": "nosuch"}]}, "unknown method"),
    ({"methods": [{"name": "dense", "prams": {}}]}, "did you mean"),
    ({"methods": [{}]}, "needs a 'name' or a 'preset'"),
])
def test_bad_suites_are_user_errors_and_write_nothing(tmp_path, suite, message):
    path = write_suite(tmp_path, **suite)
    with pytest.raises(UserError, match=message):
        resolve(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, dense_preset", [
    ("quickstart-structured", "quickstart.yaml"), ("cpu-tier", "cifar10-resnet20-dense.yaml")])
def test_committed_suites_resolve(tmp_path, name, dense_preset):
    specs = resolve(ROOT / "benchmarks" / "suites" / f"{name}.yaml", tmp_path)
    assert len(specs) == 27 and {s.seed for s in specs} == {0, 1, 2}
    methods = {s.config.method.name for s in specs}
    assert methods == {"dense", "reprune", "chex", "l1_filter", "bn_scale", "torch_pruning", "hrank", "slimming",
                       "prunetrain"}
    dense = load_config(ROOT / "configs" / dense_preset).to_dict()
    for s in specs:
        cfg = s.config.to_dict()
        for section in ("data", "model", "optim", "schedule"):
            assert cfg[section] == dense[section], (s.key, section)
        assert {k: v for k, v in cfg["train"].items() if k not in ("seed", "threads", "progress")} == {
            k: v for k, v in dense["train"].items() if k not in ("seed", "threads", "progress")}


def test_select_runs_filters_and_orders_by_the_lists_given(tmp_path):
    from prunekit.bench import select_runs

    path = write_suite(tmp_path, seeds=[0, 1, 2], methods=[{"name": "dense"}, {"preset": "l1.yaml"},
                                                           {"name": "slimming", "params": {"prune_epoch": 1}}])
    specs = resolve(path, tmp_path / "out")
    assert [s.key for s in select_runs(specs)] == [s.key for s in specs]
    assert [s.key for s in select_runs(specs, seeds=[1])] == ["dense/seed-1", "l1_filter/seed-1", "slimming/seed-1"]
    chosen = select_runs(specs, seeds=[2, 0], labels=["slimming", "dense"])
    assert [s.key for s in chosen] == ["slimming/seed-0", "slimming/seed-2", "dense/seed-0", "dense/seed-2"]
    with pytest.raises(UserError, match="seed 7 is not in the suite"):
        select_runs(specs, seeds=[7])
    with pytest.raises(UserError, match="method 'chex' is not in the suite .it has dense, l1_filter, slimming"):
        select_runs(specs, labels=["chex"])


def test_the_dst_suite_resolves_to_the_presets_with_the_dense_settings(tmp_path):
    specs = resolve(ROOT / "benchmarks" / "suites" / "dst-cpu-tier.yaml", tmp_path)
    by_key = {s.key: s for s in specs}
    assert len(specs) == 21
    assert by_key["rigl-uniform/seed-0"].config.method.params["distribution"] == "uniform"
    assert by_key["rigl-erk/seed-0"].config.method.params == load_config(
        ROOT / "configs" / "rigl-cifar10-resnet20.yaml").method.params
    assert {s.config.method.params.get("sparsity") for s in specs if s.label != "dense"} == {0.9}
    dense = load_config(ROOT / "configs" / "cifar10-resnet20-dense.yaml").to_dict()
    for s in specs:
        assert {k: s.config.to_dict()[k] for k in ("data", "model", "optim", "schedule")} == {
            k: dense[k] for k in ("data", "model", "optim", "schedule")}
