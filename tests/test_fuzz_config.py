"""Fuzzed configs and command lines: each either loads or fails with a one-line UserError, never anything else
(issue 18). Hypothesis with a fixed seed (`derandomize`) and a fixed number of examples, so the test is
reproducible and bounded in time (a few seconds for the parsing levels; the end-to-end level trains at most
`E2E_EXAMPLES` one-epoch runs on 64 synthetic 1x8x8 images).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import pytest
import torch
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from prunekit.config import RunConfig, load_config  # noqa: E402
from prunekit.errors import UserError  # noqa: E402
from prunekit.methods import build_method  # noqa: E402


def config_keys(cls: type = RunConfig, prefix: str = "") -> list[str]:
    """Every key of the config dataclasses, dotted (new fields are fuzzed as soon as they exist)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += config_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


KEYS = config_keys()
EXTRA_KEYS = ["method.params.sparsity", "method.params.t_prune", "method.params.interval", "model.kwargs.widths",
              "train.epohcs", "nosuch", "train.", ".x", "train..epochs", "data.path.x"]
EDGE_VALUES = [
    ".nan", ".inf", "-.inf", "nan", "inf", "1e400", "-1", "0", "1", "0.5", "1099511627776", "9" * 5000, "9" * 40,
    "-" + "9" * 31, "true", "null", "~", "[]", "{}", "[1, 2, 3]", "[0, 8, 8]", "[-1, 8, 8]", "[3, 100000, 100000]",
    "[0.9, 1.0]", "[.nan, 0.5]", "'abc'", '"a\\0b"', "&a [*a]", "[" * 60 + "]" * 60, "{a: {b: {c: {d: 1}}}}",
    "2020-13-45", "!!python/object:os.system {}", "../../etc", "torch.hub:load", "os:system", "a:b:c", "sgd",
    "adam", "cosine", "synthetic", "small_cnn", "reprune", "cpu", "cuda:7", "auto", "[unclosed", "{a: 1",
    "- a\n- b", "a: &x [1]\nb: *x", "0x1F", "0o17", "1_000", "+.5", "12:30:00",
]
numbers = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True))
flow_lists = st.lists(numbers, max_size=4).map(lambda xs: "[" + ", ".join(repr(x) for x in xs) + "]")
values = st.one_of(st.sampled_from(EDGE_VALUES), numbers.map(repr), flow_lists, st.text(max_size=24))
keys = st.one_of(st.sampled_from(KEYS), st.sampled_from(EXTRA_KEYS), st.text(min_size=1, max_size=12))
def fuzz(max_examples: int) -> settings:
    return settings(max_examples=max_examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def loads_or_one_line(load: typing.Callable[[], object]) -> object | None:
    """Call `load`; a UserError must be one line (the CLI prints it as such); anything else propagates."""
    try:
        return load()
    except UserError as error:
        text = str(error)
        assert "\n" not in text and "\r" not in text and len(text) < 2000, text
        return None


@fuzz(400)
@given(st.lists(st.tuples(keys, values), min_size=1, max_size=4))
def test_fuzzed_set_overrides(pairs: list[tuple[str, str]]) -> None:
    cfg = loads_or_one_line(lambda: load_config(None, [f"{k}={v}" for k, v in pairs]))
    if cfg is not None:  # a config that loads is also one whose method parameters check out, or fail in one line
        assert isinstance(cfg, RunConfig)
        assert all_finite(cfg.to_dict()), cfg
        loads_or_one_line(lambda: build_method(cfg.method))


def all_finite(value: object) -> bool:
    """No NaN or infinity anywhere in a loaded config: every number was checked."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(all_finite(v) for v in value)
    return True


plain = st.recursive(st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12)),
                     lambda children: st.one_of(st.lists(children, max_size=3),
                                                st.dictionaries(st.text(max_size=8), children, max_size=3)),
                     max_leaves=12)


@fuzz(200)
@given(st.dictionaries(st.sampled_from(KEYS + EXTRA_KEYS), plain, min_size=1, max_size=5))
def test_fuzzed_yaml_files(tmp_path_factory: pytest.TempPathFactory, flat: dict[str, object]) -> None:
    nested: dict = {}
    for key, value in flat.items():
        node, parts = nested, key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            node = child if isinstance(child, dict) else {}
        node[parts[-1]] = value
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(yaml.safe_dump(nested))
    cfg = loads_or_one_line(lambda: load_config(path))
    assert cfg is None or all_finite(cfg.to_dict())


@fuzz(150)
@given(st.one_of(st.binary(max_size=200), st.sampled_from(EDGE_VALUES).map(str.encode)))
def test_fuzzed_config_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_bytes(data)
    loads_or_one_line(lambda: load_config(path))


# ---- end to end: values that reach the trainer (threads, shapes, optimizer, schedule) ----

E2E_EXAMPLES = 20
TINY = ["data.name=synthetic", "data.synthetic_size=64", "train.epochs=1", "train.batch_size=32",
        "train.progress=never", "model.name=small_cnn", "model.kwargs={widths: [4, 8]}"]
runtime_values = {
    "train.threads": st.sampled_from(["1", "2", "1024", "0", "1099511627776", "null"]),
    "data.synthetic_shape": st.sampled_from(["[1, 8, 8]", "[1, 1, 1]", "[3, 2, 5]", "[1, 8, 0]", "[2, 3, 3]"]),
    "data.num_classes": st.sampled_from(["2", "3", "1", "64", "100000"]),
    "data.crop_padding": st.sampled_from(["0", "1", "4", "64"]),
    "data.val_fraction": st.sampled_from(["0", "0.5", "0.9", ".nan"]),
    "data.train_subset": st.sampled_from(["null", "1", "3", "10"]),
    "train.label_smoothing": st.sampled_from(["0", "0.5", "0.99", ".nan", "1"]),
    "train.eval_batch_size": st.sampled_from(["1", "7", "1048576"]),
    "optim.name": st.sampled_from(["sgd", "adam", "adamw"]),
    "optim.betas": st.sampled_from(["[0.0, 0.0]", "[0.9, 0.999]", "[0.99999, 0.5]", "[1.0, 0.9]"]),
    "optim.momentum": st.sampled_from(["0", "0.9", "1"]),
    "optim.lr": st.sampled_from(["0", "0.05", "1e-4", "10", ".inf"]),
    "optim.eps": st.sampled_from(["0", "1e-8", "1"]),
    "schedule.name": st.sampled_from(["cosine", "multistep", "constant"]),
    "schedule.warmup_epochs": st.sampled_from(["0", "0.5", "1", "1000", ".inf"]),
    "schedule.milestones": st.sampled_from(["[]", "[0]", "[1, 5]"]),
    "train.seed": st.sampled_from(["0", "9223372036854775807", "-1"]),
}


@pytest.fixture
def restore_torch_globals():
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@fuzz(E2E_EXAMPLES)
@given(st.fixed_dictionaries({}, optional=runtime_values))
def test_fuzzed_runs_train_or_fail_in_one_line(tmp_path_factory: pytest.TempPathFactory, restore_torch_globals,
                                               capsys: pytest.CaptureFixture, chosen: dict[str, str]) -> None:
    from prunekit.cli import main

    out = tmp_path_factory.mktemp("run") / "run"
    argv = ["train", "--out", str(out), "--quiet"]
    for override in TINY + [f"{k}={v}" for k, v in chosen.items()]:
        argv += ["--set", override]
    path = Path(out.parent / "c.yaml")
    path.write_text("{}\n")
    try:
        code = main([argv[0], str(path), *argv[1:]])
    finally:
        torch.set_num_threads(1)
    _, err = capsys.readouterr()
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("prunekit: error: "), err
    else:
        assert code == 0, err
        assert (out / "summary.json").is_file()
