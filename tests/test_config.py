import pytest

from prunekit.config import RunConfig, load_config
from prunekit.errors import UserError


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  epochs: 4\n"), ["optim.lr=0.5", "optim.betas=[0.8, 0.99]"])
    assert isinstance(cfg, RunConfig)
    assert cfg.train.epochs == 4 and cfg.optim.lr == 0.5 and cfg.optim.betas == (0.8, 0.99)
    assert cfg.name == "c"  # named after the preset file
    assert isinstance(cfg.optim.lr, float)


def test_int_accepted_for_float_and_yaml_parsed_override(tmp_path):
    cfg = load_config(write(tmp_path, "optim:\n  lr: 1\n"), ["schedule.milestones=[3, 6]"])
    assert cfg.optim.lr == 1.0 and cfg.schedule.milestones == [3, 6]


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("train:\n  epohcs: 3\n", [], "unknown config key 'train.epohcs' (did you mean 'train.epochs'?)"),
        ("trian:\n  epochs: 3\n", [], "did you mean 'train'?"),
        ("train:\n  epochs: three\n", [], "config key 'train.epochs': expected an integer, got 'three'"),
        ("train:\n  epochs: 0\n", [], "must be an integer in [1, 1000000], got 0"),
        ("optim:\n  name: rmsprop\n", [], "expected one of 'sgd', 'adam', 'adamw'"),
        ("optim:\n  momentum: 1.5\n", [], "must be a number in [0, 1]"),
        ("train: 5\n", [], "must be a mapping"),
        ("- a\n- b\n", [], "top level must be a mapping"),
        ("train: [unclosed\n", [], "not valid YAML"),
        ("", ["train.epochs"], "--set expects key=value"),
        ("train:\n  epochs: 3\n", ["train.epochs.x=3"], "is not a section"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, text, overrides, message):
    with pytest.raises(UserError) as info:
        load_config(write(tmp_path, text), overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_says_where(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_to_dict_round_trips(tmp_path):
    import yaml

    cfg = load_config(write(tmp_path, "optim:\n  betas: [0.5, 0.6]\n"))
    again = load_config(write(tmp_path, yaml.safe_dump(cfg.to_dict())))
    assert again == cfg


def test_exponent_without_dot_is_a_number(tmp_path):
    cfg = load_config(write(tmp_path, "optim:\n  weight_decay: 1e-4\n"))
    assert cfg.optim.weight_decay == 1e-4


def test_missing_required_method_param_is_a_user_error():
    import dataclasses

    from prunekit.config import build_dataclass

    @dataclasses.dataclass
    class Params:
        prune_epoch: int
        rate: float = 0.5

    with pytest.raises(UserError, match="'method.params.prune_epoch' is required"):
        build_dataclass(Params, {"rate": 0.3}, prefix="method.params.")
