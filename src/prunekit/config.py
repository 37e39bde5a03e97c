"""Run configuration: dataclasses, YAML loading, `--set key=value` overrides and validation.

Every mistake is a `UserError` naming the key: an unknown key gets the closest valid key suggested, a wrong
type or out-of-range value says what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prunekit.config_checks import check_config, check_config_value
from prunekit.errors import UserError
from prunekit.io import loads_yaml
from prunekit.io import read_yaml as read_yaml_file
from prunekit.registry import closest


@dataclass
class DataConfig:
    """Where the images come from and how training batches are augmented."""

    name: str = "digits"  # digits | cifar10 | cifar100 | mnist | fashion-mnist | imagefolder | synthetic
    path: str | None = None  # directory or archive; None means the source's default places
    val_fraction: float = 0.0  # held out from the training split, stratified, seeded
    train_subset: int | None = None  # a stratified, seeded subset of N training images for quick runs
    test_subset: int | None = None
    download: bool = False  # fetch CIFAR / MNIST-family data from their official addresses when missing
    cache_dir: str | None = None  # decoded image-folder caches; default ~/.cache/prunekit
    augment: bool = True  # random crop with padding + horizontal flip on training batches
    crop_padding: int = 4
    flip: bool = True
    normalize: bool = True
    # Hold the whole dataset on train.device as uint8 and gather, crop, flip and normalise every batch there (no
    # per-batch host copy; the batches are bitwise those of the host path). For a GPU; on the CPU it changes nothing.
    on_device: bool = False
    # synthetic source only
    synthetic_size: int = 512
    synthetic_shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int | None = None  # synthetic source only; other sources know theirs


@dataclass
class ModelConfig:
    name: str = "small_cnn"  # a registry name or a user factory "package.module:function"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    decay_bn_and_bias: bool = True  # False excludes BN parameters and biases from weight decay
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


@dataclass
class ScheduleConfig:
    """Learning rate as a pure function of the global step (see prunekit.train.schedules)."""

    name: Literal["cosine", "multistep", "constant"] = "cosine"
    warmup_epochs: float = 0.0  # linear warm-up from 0
    milestones: list[int] = field(default_factory=list)  # multistep: epochs at which lr *= gamma
    gamma: float = 0.1
    min_lr: float = 0.0  # cosine floor


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 512
    label_smoothing: float = 0.0
    channels_last: bool = False
    amp: bool = False  # bfloat16 autocast (CPU and CUDA; needs no loss scaling)
    # torch.compile the training module (forward and backward); compiled again for each new subnet a decision
    # makes. Off by default: on the CPU compiling takes longer than it saves on short runs (benchmarks/RESULTS.md).
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"  # reduce-overhead: CUDA graphs
    seed: int = 0  # initialisation seed (and data order unless data_seed is set)
    data_seed: int | None = None  # order, augmentation and dropout of the training batches; None: seed
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    threads: int | None = None  # torch.set_num_threads; None keeps torch's default
    checkpoint_every: int = 1  # epochs between checkpoints (the last epoch is always saved)
    checkpoint_every_steps: int = 0  # also checkpoint every N optimizer steps, mid-epoch included (0: off)
    keep_checkpoints: list[str] = field(default_factory=list)  # steps kept by name: "500it", "2ep", "0.1"
    progress: Literal["auto", "always", "never"] = "auto"  # bar only on a terminal when "auto"
    tensorboard: bool = False
    deterministic: bool = True


@dataclass
class MethodConfig:
    """The pruning method; its own parameters are validated by the method's dataclass."""

    name: str = "dense"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    # A dense run of the same preset; summary.json then reports train_flops_saved / train_time_saved.
    baseline_run: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "data.val_fraction": (0.0, 0.9, "a fraction in [0, 0.9]"),
    "data.train_subset": (1, None, "a positive integer"),
    "data.test_subset": (1, None, "a positive integer"),
    "data.crop_padding": (0, None, "a non-negative integer"),
    "data.synthetic_size": (1, None, "a positive integer"),
    "data.num_classes": (2, None, "an integer >= 2"),
    "optim.lr": (0.0, None, "a non-negative number"),
    "optim.momentum": (0.0, 1.0, "a number in [0, 1]"),
    "optim.weight_decay": (0.0, None, "a non-negative number"),
    "optim.eps": (0.0, None, "a positive number"),
    "schedule.warmup_epochs": (0.0, None, "a non-negative number"),
    "schedule.gamma": (0.0, None, "a positive number"),
    "schedule.min_lr": (0.0, None, "a non-negative number"),
    "train.epochs": (1, None, "a positive integer"),
    "train.batch_size": (1, None, "a positive integer"),
    "train.eval_batch_size": (1, None, "a positive integer"),
    "train.label_smoothing": (0.0, 0.99, "a number in [0, 0.99]"),
    "train.threads": (1, None, "a positive integer"),
    "train.checkpoint_every": (1, None, "a positive integer"),
    "train.checkpoint_every_steps": (0, None, "a non-negative integer"),
}


def _plain(obj: Any) -> Any:
    """Tuples to lists so the dict dumps as plain YAML/JSON."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return getattr(origin, "__name__", str(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting lists to tuples and ints to floats."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _coerce(value, arg, key)
            except UserError:
                continue
        raise UserError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise UserError(f"config key {key!r}: expected null, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise UserError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise UserError(f"config key {key!r}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise UserError(f"config key {key!r}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"config key {key!r}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"config key {key!r}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UserError(f"config key {key!r}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"config key {key!r}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise UserError(f"config key {key!r}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def build_dataclass(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys with a suggestion."""
    if not isinstance(values, dict):
        raise UserError(f"config section {prefix.rstrip('.') or '<top>'!r} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise UserError(f"unknown config key {full!r}{closest(key, names, prefix)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build_dataclass(tp, value if value is not None else {}, prefix=f"{full}.")
            continue
        kwargs[key] = _coerce(value, tp, full)
        check_config_value(full, kwargs[key])  # finiteness and ranges (prunekit.config_checks)
        low, high, what = RANGES.get(full, (None, None, ""))
        number = kwargs[key]
        is_number = isinstance(number, int | float) and not isinstance(number, bool)
        if is_number and ((low is not None and number < low) or (high is not None and number > high)):
            raise UserError(f"config key {full!r}: must be {what}, got {number!r}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in kwargs]
    if missing:
        raise UserError(f"config key {prefix + missing[0]!r} is required")
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.epochs=3' -> (['train', 'epochs'], 3); the value is parsed as YAML."""
    if "=" not in text:
        raise UserError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise UserError(f"--set expects key=value, got {text!r}")
    value = loads_yaml(raw, f"--set {key.strip()[:100]!r}") if raw.strip() else ""
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"--set {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return raw


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    raw = read_yaml_file(p)  # size, nesting, alias-expansion and UTF-8 checks: prunekit.io
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"{p}: the top level must be a mapping of sections")
    return raw


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML preset (or the defaults when `path` is None), apply `key=value` overrides, validate."""
    raw = read_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, list(overrides or []))
    if "name" not in raw and path is not None:
        raw["name"] = Path(path).stem
    return check_config(build_dataclass(RunConfig, raw))
