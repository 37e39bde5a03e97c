"""Shared argument helpers of the subcommands."""

from __future__ import annotations

import argparse

from prunekit.errors import UserError


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--input must look like 3x32x32, got {text!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"--input must be CxHxW with positive sizes, got {text!r}")
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
    p.add_argument("--num-classes", type=positive_int, default=10)
    p.add_argument("--json", action="store_true", help="print one JSON object")
