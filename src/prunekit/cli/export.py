"""`prunekit export RUN_DIR --onnx FILE`: the run's final model as ONNX, checked against onnxruntime."""

from __future__ import annotations

import argparse
from pathlib import Path

from prunekit.errors import UserError


def run(args: argparse.Namespace) -> int:
    import torch

    from prunekit.channels import export_onnx, load_pruned_model
    from prunekit.io import read_json

    model_dir = Path(args.run_dir) / "model"
    model = load_pruned_model(model_dir)
    shape = read_json(model_dir / "pruned.json")["model"]["input_shape"]
    try:
        diff = export_onnx(model, torch.randn(1, *shape), args.onnx)
    except ImportError as exc:
        raise UserError("ONNX export needs onnx and onnxruntime: pip install 'prunekit[onnx]'") from exc
    print(f"wrote {args.onnx} (onnxruntime max abs difference {diff:.2e})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="export a run's final model")
    export.add_argument("run_dir")
    export.add_argument("--onnx", required=True, metavar="FILE")
    export.set_defaults(func=run)
