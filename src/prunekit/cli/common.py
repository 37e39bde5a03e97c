"""Shared argument helpers of the subcommands."""

from __future__ import annotations

import argparse
import math

from prunekit.errors import UserError

MAX_SIDE = 8192
MAX_SAMPLE_VALUES = 1 << 24  # C * H * W of one input sample, as for pruned.json (prunekit.channels.persist)
MAX_CLASSES = 100_000


def positive_int(text: str) -> int:
    try:
        value = int(text)  # a ValueError also for more than 4300 digits
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text[:40]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def class_count(text: str) -> int:
    value = positive_int(text)
    if value > MAX_CLASSES:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_CLASSES} classes, got {text!r}")
    return value


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--input must look like 3x32x32, got {text[:40]!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"--input must be CxHxW with positive sizes, got {text!r}")
    if max(shape) > MAX_SIDE or math.prod(shape) > MAX_SAMPLE_VALUES:
        raise UserError(f"--input {text!r} is too large (each size at most {MAX_SIDE}, at most "
                        f"{MAX_SAMPLE_VALUES:,} values per sample)")
    return shape


def build_model(name: str, input_text: str | None, num_classes: int):  # noqa: ANN202
    import torch

    from prunekit.models import create_model, default_input_shape
    from prunekit.train.trainer import check_model_accepts

    shape = parse_shape(input_text) if input_text else default_input_shape(name)
    model = create_model(name, num_classes=num_classes, in_channels=shape[0])
    check_model_accepts(model, torch.zeros(2, *shape), name)
    return model, shape, torch


def model_args(p: argparse.ArgumentParser) -> None:
    """--model, --input, --num-classes and --json, as `measure` and `inspect` take them."""
    p.add_argument("--model", required=True, help="registry name or package.module:factory")
    p.add_argument("--input", help="input shape CxHxW (default: the model's usual input)")
    p.add_argument("--num-classes", type=class_count, default=10)
    p.add_argument("--json", action="store_true", help="print one JSON object")
