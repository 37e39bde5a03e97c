"""Run-directory names hash only the settings that differ from their defaults (OpenLTH style)."""

import dataclasses

from prunekit.config import RunConfig, TrainConfig, load_config
from prunekit.train import trainer
from prunekit.train.trainer import non_default_settings, run_dir_name


def example():
    return load_config(None, ["name=x", "train.epochs=3", "method.name=reprune", "method.params.sparsity=0.5"])


def test_name_is_a_fixed_hash_of_the_non_default_settings():
    assert non_default_settings(example()) == {"train": {"epochs": 3},
                                               "method": {"name": "reprune", "params": {"sparsity": 0.5}}}
    # sha256('{"method": {"name": "reprune", "params": {"sparsity": 0.5}}, "train": {"epochs": 3}}')[:8]
    assert run_dir_name(example()) == "x-a29d1858"
    assert run_dir_name(load_config(None, ["name=x"])) == "x-44136fa3"  # sha256("{}")


def test_a_new_config_field_with_a_default_does_not_rename_runs(monkeypatch):
    @dataclasses.dataclass
    class TrainWithNewField(TrainConfig):
        brand_new_setting: int = 7

    @dataclasses.dataclass
    class RunWithNewField(RunConfig):
        train: TrainWithNewField = dataclasses.field(default_factory=TrainWithNewField)

    before = run_dir_name(example())
    cfg = example()
    extended = RunWithNewField(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(RunConfig)})
    extended.train = TrainWithNewField(**dataclasses.asdict(cfg.train))
    monkeypatch.setattr(trainer, "RunConfig", RunWithNewField)
    assert run_dir_name(extended) == before


def test_setting_a_value_equal_to_its_default_keeps_the_name():
    assert run_dir_name(load_config(None, ["name=x", "train.seed=0"])) == run_dir_name(load_config(None, ["name=x"]))
