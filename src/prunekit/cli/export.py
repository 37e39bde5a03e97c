"""`prunekit export RUN_DIR --onnx FILE`: the run's final model as ONNX, checked against onnxruntime.

Only registry models are rebuilt from a run directory; `--trust-factory` imports the user factory its
`model/pruned.json` names (that runs the factory's module: use it only for run directories you trust).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prunekit.errors import UserError


def run(args: argparse.Namespace) -> int:
    import torch

    from prunekit.channels.persist import export_onnx, load_pruned_model, read_pruned_record
    from prunekit.models import load_user_factory
    from prunekit.models.registry import is_user_factory
    from prunekit.rundir import check_output_file

    check_output_file(args.onnx, "--onnx")
    model_dir = Path(args.run_dir) / "model"
    if not (model_dir / "pruned.json").is_file():
        raise UserError(f"{args.run_dir}: no saved model (expected {model_dir / 'pruned.json'})")
    spec = read_pruned_record(model_dir)["model"]
    model_fn = load_user_factory(spec["name"]) if args.trust_factory and is_user_factory(spec["name"]) else None
    model = load_pruned_model(model_dir, model_fn=model_fn)
    try:
        diff = export_onnx(model, torch.randn(1, *spec["input_shape"]), args.onnx)
    except ImportError as exc:
        raise UserError("ONNX export needs onnx and onnxruntime: pip install 'prunekit[onnx]'") from exc
    print(f"wrote {args.onnx} (onnxruntime max abs difference {diff:.2e})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="export a run's final model")
    export.add_argument("run_dir")
    export.add_argument("--onnx", required=True, metavar="FILE")
    export.add_argument("--trust-factory", action="store_true",
                        help="import the user model factory named in RUN_DIR/model/pruned.json (runs its code)")
    export.set_defaults(func=run)
