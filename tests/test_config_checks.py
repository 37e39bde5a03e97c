"""Every config value checked for finiteness and range, as a one-line UserError naming the key (issue 18)."""

from __future__ import annotations

import pytest

from prunekit.config import RunConfig, build_dataclass, load_config
from prunekit.config_checks import BOUNDS, check_config
from prunekit.errors import UserError


def rejected(overrides: list[str], message: str, text: str | None = None, tmp_path=None) -> str:
    path = None
    if text is not None:
        path = tmp_path / "c.yaml"
        path.write_text(text)
    with pytest.raises(UserError, match=message) as caught:
        load_config(path, overrides)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 600
    return str(caught.value)


@pytest.mark.parametrize(("override", "message"), [
    ("train.label_smoothing=.nan", r"'train.label_smoothing': must be a number in \[0, 0.99\], got nan"),
    ("train.label_smoothing=.inf", "train.label_smoothing"),
    ("optim.lr=.nan", "'optim.lr': must be a finite number >= 0"),
    ("optim.lr=.inf", "'optim.lr'"),
    ("optim.lr=nan", "'optim.lr'"),  # the string "nan", which float() would accept
    ("optim.weight_decay=-.inf", "optim.weight_decay"),
    ("optim.momentum=.nan", "optim.momentum"),
    ("optim.eps=.nan", "optim.eps"),
    ("optim.betas=[0.9, 1.0]", r"'optim.betas': must be two numbers in \[0, 1\)"),
    ("optim.betas=[-0.1, 0.999]", "optim.betas"),
    ("optim.betas=[.nan, 0.999]", "optim.betas"),
    ("optim.betas=[0.9]", "expected 2 values"),
    ("schedule.warmup_epochs=.inf", "schedule.warmup_epochs"),
    ("schedule.warmup_epochs=-1", "schedule.warmup_epochs"),
    ("schedule.gamma=.nan", "schedule.gamma"),
    ("schedule.min_lr=.inf", "schedule.min_lr"),
    ("schedule.milestones=[5, -1]", "schedule.milestones"),
    ("data.val_fraction=.nan", "data.val_fraction"),
    ("train.threads=1099511627776", r"'train.threads': must be an integer in \[1, 1024\]"),
    ("train.threads=0", "train.threads"),
    ("train.epochs=" + "9" * 5000, "cannot be read"),  # over Python's 4300-digit limit
    ("train.epochs=" + "9" * 100, "must be an integer in .*got a 333-bit integer"),
    ("train.seed=-1", "train.seed"),
    ("train.seed=" + "1" * 25, "train.seed"),
    ("train.batch_size=0", "train.batch_size"),
    ("data.synthetic_shape=[0, 8, 8]", "data.synthetic_shape"),
    ("data.synthetic_shape=[3, -8, 8]", "data.synthetic_shape"),
    ("data.synthetic_shape=[3, 8]", "expected 3 values"),
    ("data.num_classes=1", "data.num_classes"),
    ("data.num_classes=" + "1" * 40, "data.num_classes"),
    ("data.crop_padding=100000", "data.crop_padding"),
    ("model.kwargs={widths: [.nan]}", "not a finite number"),
    ("method.params={sparsity: .nan}", "not a finite number"),
    ("method.params={sparsity: " + "[" * 40 + "]" * 40 + "}", "nested more than"),
    ("model.name=torch.hub:load", "not a model package"),
    ("model.name=os:system", "not a model package"),
    ("model.name=a b:c", "must look like"),
    ("name=../../etc", "'name'"),
    ("name=/abs", "'name'"),
    ("name=.hidden", "'name'"),
    ("name=" + "x" * 101, "'name'"),
    ("data.path=a\x00b", "not valid YAML"),  # the YAML reader refuses a raw NUL
    ('data.path="a\\0b"', "NUL"),  # an escaped one reaches the value
])
def test_bad_values_name_the_key(override: str, message: str) -> None:
    rejected([override], message)


def test_yaml_file_values(tmp_path) -> None:
    rejected([], "train.label_smoothing", "train:\n  label_smoothing: .nan\n", tmp_path)
    rejected([], "optim.betas", "optim:\n  name: adam\n  betas: [0.9, .inf]\n", tmp_path)
    rejected([], "expands to more than", "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [" + ", ".join(["*a"] * 10) + "]\n"
             + "".join(f"c{i}: &c{i} [" + ", ".join([f"*{'b' if i == 0 else f'c{i - 1}'}"] * 10) + "]\n"
                       for i in range(5)), tmp_path)


def test_synthetic_memory_is_bounded() -> None:
    rejected(["data.name=synthetic", "data.synthetic_shape=[64, 4096, 4096]"], "values per image")
    rejected(["data.name=synthetic", "data.synthetic_size=10000000", "data.synthetic_shape=[3, 32, 32]"], "GiB")
    # other sources ignore the synthetic keys, so a large synthetic shape is no error there
    assert load_config(None, ["data.synthetic_shape=[64, 4096, 4096]"]).data.name == "digits"


def test_good_values_pass() -> None:
    cfg = load_config(None, ["optim.name=adam", "optim.betas=[0.0, 0.999]", "train.label_smoothing=0.1",
                             "schedule.warmup_epochs=0.5", "train.threads=1", "train.seed=0",
                             "data.synthetic_shape=[1, 1, 1]", "name=my-run_1.v2", "optim.lr=1e-3",
                             "model.name=mypackage.models:build"])
    assert cfg.optim.betas == (0.0, 0.999) and cfg.schedule.warmup_epochs == 0.5
    assert check_config(cfg) is cfg


def test_resume_path_checks_values_too() -> None:
    # Trainer.resume builds config.yaml through build_dataclass: the per-key checks apply there as well
    with pytest.raises(UserError, match="train.label_smoothing"):
        build_dataclass(RunConfig, {"train": {"label_smoothing": float("nan")}})


def test_every_bounded_key_exists() -> None:
    defaults = RunConfig().to_dict()
    for key in BOUNDS:
        node = defaults
        for part in key.split("."):
            assert part in node, key  # a bound for a key that was renamed would silently check nothing
            node = node[part]
