"""Value checks of a run configuration, beyond types: finiteness and ranges of every number, sizes that fit in
memory, names that stay inside the runs root, strings a file system accepts.

`check_config_value(key, value)` is called by `config.build_dataclass` for every key it builds (so a config read
back by `--resume` is checked too); `check_config(cfg)` adds the checks that involve several keys. Every failure
is a one-line UserError naming the key and what it must be. NaN compares false with everything, so every range
test here is written as `low <= value <= high` (which NaN fails), never as `value < low or value > high`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from prunekit.errors import UserError
from prunekit.io import MAX_INT_DIGITS, check_plain_value

MAX_SEED = 2**63 - 1
MAX_SAMPLE_VALUES = 1 << 24  # C * H * W of one synthetic sample (a 3 x 2365 x 2365 image)
MAX_SYNTHETIC_BYTES = 4 << 30  # uint8 images of the synthetic training split
MAX_STRING = 4096
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,99}")


@dataclass(frozen=True)
class Bound:
    """`low <= value <= high` (`high_open`: `value < high`); None is unbounded (the value must still be finite)."""

    low: float | None = None
    high: float | None = None
    what: str = ""
    high_open: bool = False

    def holds(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and not self.low <= value:
            return False
        if self.high is None:
            return True
        return value < self.high if self.high_open else value <= self.high


def _integer(low: int, high: int) -> Bound:
    return Bound(low, high, f"an integer in [{low}, {high}]")


# Keys with a range, also for each element of a list / tuple value (milestones, betas, synthetic_shape).
BOUNDS: dict[str, Bound] = {
    "data.val_fraction": Bound(0.0, 0.9, "a fraction in [0, 0.9]"),
    "data.train_subset": _integer(1, 10**9),
    "data.test_subset": _integer(1, 10**9),
    "data.crop_padding": _integer(0, 1024),
    "data.synthetic_size": _integer(1, 10**7),
    "data.synthetic_shape": _integer(1, 8192),
    "data.num_classes": _integer(2, 100_000),
    "optim.lr": Bound(0.0, None, "a finite number >= 0"),
    "optim.momentum": Bound(0.0, 1.0, "a number in [0, 1]"),
    "optim.weight_decay": Bound(0.0, None, "a finite number >= 0"),
    "optim.betas": Bound(0.0, 1.0, "two numbers in [0, 1), e.g. [0.9, 0.999]", high_open=True),
    "optim.eps": Bound(0.0, 1.0, "a number in [0, 1]"),
    "schedule.warmup_epochs": Bound(0.0, 10**6, "a number of epochs in [0, 1e6]"),
    "schedule.milestones": _integer(0, 10**6),
    "schedule.gamma": Bound(0.0, None, "a finite number >= 0"),
    "schedule.min_lr": Bound(0.0, None, "a finite number >= 0"),
    "train.epochs": _integer(1, 10**6),
    "train.batch_size": _integer(1, 1 << 20),
    "train.eval_batch_size": _integer(1, 1 << 20),
    "train.label_smoothing": Bound(0.0, 0.99, "a number in [0, 0.99]"),
    "train.seed": _integer(0, MAX_SEED),
    "train.data_seed": _integer(0, MAX_SEED),
    "train.threads": _integer(1, 1024),
    "train.checkpoint_every": _integer(1, 10**6),
    "train.checkpoint_every_steps": _integer(0, 10**9),
}
PATH_KEYS = ("data.path", "data.cache_dir", "baseline_run")


def _number_error(key: str, value: Any, bound: Bound) -> UserError:
    huge = isinstance(value, int) and abs(value) >= 10**MAX_INT_DIGITS  # repr() of 4300+ digits would raise
    shown = f"a {value.bit_length()}-bit integer" if huge else repr(value)
    return UserError(f"config key {key!r}: must be {bound.what or 'a finite number'}, got {shown}")


def _check_numbers(key: str, value: Any, bound: Bound | None) -> None:
    """Every number in `value` (a scalar or a list / tuple of scalars) finite and within `bound`."""
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float):
            continue
        if isinstance(item, int) and abs(item) >= 10**MAX_INT_DIGITS:
            raise _number_error(key, item, bound or Bound(what=f"an integer of at most {MAX_INT_DIGITS} digits"))
        if not math.isfinite(item) or (bound is not None and not bound.holds(item)):
            raise _number_error(key, item, bound or Bound(what="a finite number"))


def _check_string(key: str, value: str) -> None:
    if len(value) > MAX_STRING or "\x00" in value:
        raise UserError(f"config key {key!r}: must be a string of at most {MAX_STRING} characters without NUL bytes")


def check_config_value(key: str, value: Any) -> None:
    """One-line UserError unless the (type-checked) value of config key `key` is finite and within its range."""
    if isinstance(value, dict):  # model.kwargs, method.params: free-form, but plain, finite data
        check_plain_value(value, f"config key {key!r}")
        return
    if isinstance(value, str):
        _check_string(key, value)
        if key == "name" and not RUN_NAME.fullmatch(value):
            raise UserError(f"config key 'name': {value[:60]!r} must be 1-100 letters, digits or ._+=- starting with "
                            "a letter or digit (it names the run directory under runs/)")
        if key == "model.name" and ":" in value:
            from prunekit.models.registry import check_factory_spec

            check_factory_spec(value)  # the form, and never the standard library or torch; nothing is imported
        return
    if isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, str):
                _check_string(key, item)
    _check_numbers(key, value, BOUNDS.get(key))


def check_config(cfg: Any) -> Any:
    """Checks that involve several keys of a RunConfig; returns `cfg`."""
    d = cfg.data
    if d.name != "synthetic":  # the synthetic keys are ignored by every other source
        return cfg
    c, h, w = d.synthetic_shape
    if c * h * w > MAX_SAMPLE_VALUES:
        raise UserError(f"config key 'data.synthetic_shape': {list(d.synthetic_shape)} has {c * h * w:,} values per "
                        f"image, more than {MAX_SAMPLE_VALUES:,}")
    if d.synthetic_size * c * h * w > MAX_SYNTHETIC_BYTES:
        raise UserError(f"config keys 'data.synthetic_size' x 'data.synthetic_shape': {d.synthetic_size} images of "
                        f"{c}x{h}x{w} need more than {MAX_SYNTHETIC_BYTES >> 30} GiB")
    return cfg
