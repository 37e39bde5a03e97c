"""Command-line entry points: `prunekit train | measure | inspect | export | info`.

A user mistake (`UserError`) prints one line on stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from prunekit.errors import UserError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--input must look like 3x32x32, got {text!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"--input must be CxHxW with positive sizes, got {text!r}")
    return shape


def cmd_train(args: argparse.Namespace) -> int:
    from prunekit.config import load_config
    from prunekit.train.trainer import Trainer, run_dir_name

    if args.resume:
        if args.config or args.set:
            raise UserError("--resume takes the run directory only; its config.yaml is used as saved")
        trainer = Trainer.resume(args.resume, quiet=args.quiet)
    else:
        if not args.config:
            raise UserError("prunekit train needs a CONFIG file (or --resume RUN_DIR)")
        cfg = load_config(args.config, args.set)
        out = Path(args.out) if args.out else Path("runs") / run_dir_name(cfg)
        trainer = Trainer(cfg, out, quiet=args.quiet)
    summary = trainer.fit()
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def _build_model(name: str, input_text: str | None, num_classes: int):  # noqa: ANN202
    import torch

    from prunekit.models import create_model, default_input_shape
    from prunekit.train.trainer import check_model_accepts

    shape = _parse_shape(input_text) if input_text else default_input_shape(name)
    model = create_model(name, num_classes=num_classes, in_channels=shape[0])
    check_model_accepts(model, torch.zeros(2, *shape), name)
    return model, shape, torch


def cmd_measure(args: argparse.Namespace) -> int:
    from prunekit.measure import count_macs, count_params, measure_latency

    model, shape, torch = _build_model(args.model, args.input, args.num_classes)
    model.eval()
    x = torch.randn(args.batch_size, *shape)
    macs = count_macs(model, x)
    result = {"model": args.model, "input": list(shape), "params": count_params(model), "macs": macs,
              "flops": 2 * macs}
    if not args.no_latency:
        lat = measure_latency(model, x, threads=args.threads, channels_last=args.channels_last)
        result.update({"latency_ms": lat.median_ms, "latency_p10_ms": lat.p10_ms, "latency_p90_ms": lat.p90_ms,
                       "batch_size": lat.batch_size, "threads": lat.threads, "channels_last": lat.channels_last})
        if lat.noisy:
            print(f"warning: latency varied {lat.spread:.1f}x between calls (p10 {lat.p10_ms:.2f} ms, p90 "
                  f"{lat.p90_ms:.2f} ms); other processes are probably using the CPU, so the median is not "
                  "reliable", file=sys.stderr)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value:,}" if isinstance(value, int) else f"{key:>16}: {value}")
        print("(MACs per sample of one forward pass; FLOPs = 2 x MACs)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from prunekit.channels import inspect_rows

    model, shape, torch = _build_model(args.model, args.input, args.num_classes)
    rows = inspect_rows(model, torch.randn(1, *shape))
    groups = [r for r in rows if r["kind"] == "group"]
    unsupported = [r for r in rows if r["kind"] == "unsupported"]
    if args.policy:
        groups = [r for r in groups if r[f"prunable_{args.policy}"]]
    if args.json:
        print(json.dumps({"groups": groups, "unsupported": unsupported}, sort_keys=True))
        return 0
    header = f"{'group':<24} {'size':>5} {'prod':>4} {'cons':>4} {'bn':<22} {'MACs%':>6}  prunable under"
    print(header)
    print("-" * len(header))
    for row in groups:
        policies = "/".join(p for p in ("internal", "all") if row[f"prunable_{p}"]) or f"- ({row['reason']})"
        print(f"{row['name']:<24} {row['size']:>5} {len(row['producers']):>4} {len(row['consumers']):>4} "
              f"{str(row['bn'] or '-'):<22} {100 * row['macs_share']:>6.1f}  {policies}")
    for row in unsupported:
        print(f"unsupported: {row['name']} ({row['type']}): {row['reason']}")
    print("MACs% = dense MACs of the group's producers and consumers over all conv/linear MACs (an upper bound "
          "on what pruning the group saves)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
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


def cmd_info(args: argparse.Namespace) -> int:
    import numpy
    import torch

    import prunekit

    info = {
        "prunekit": prunekit.__version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": numpy.__version__, "threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(), "device": torch.cuda.get_device_name(0) if torch.cuda.is_available()
        else platform.processor() or platform.machine(),
    }
    for optional in ("torch_pruning", "scipy", "safetensors", "onnxruntime", "flwr", "tensorboard"):
        try:
            module = __import__(optional)
            info[optional] = getattr(module, "__version__", "installed")
        except ImportError:
            info[optional] = None
    for key, value in info.items():
        print(f"{key:>14}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prunekit", description="Prune neural networks while they train.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a preset into a run directory")
    train.add_argument("config", nargs="?", help="YAML preset, e.g. configs/quickstart.yaml")
    train.add_argument("--out", help="run directory (default runs/<name>-<config hash>)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.set_defaults(func=cmd_train)

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True, help="registry name or package.module:factory")
        p.add_argument("--input", help="input shape CxHxW (default: the model's usual input)")
        p.add_argument("--num-classes", type=_positive_int, default=10)
        p.add_argument("--json", action="store_true", help="print one JSON object")

    measure = sub.add_parser("measure", help="parameters, MACs, FLOPs and latency of a model")
    model_args(measure)
    measure.add_argument("--batch-size", type=_positive_int, default=1)
    measure.add_argument("--threads", type=_positive_int)
    measure.add_argument("--channels-last", action="store_true")
    measure.add_argument("--no-latency", action="store_true")
    measure.set_defaults(func=cmd_measure)

    inspect = sub.add_parser("inspect", help="channel groups of a model and what each policy may prune")
    model_args(inspect)
    inspect.add_argument("--policy", choices=["internal", "all"], help="list only the groups this policy prunes")
    inspect.set_defaults(func=cmd_inspect)

    export = sub.add_parser("export", help="export a run's final model")
    export.add_argument("run_dir")
    export.add_argument("--onnx", required=True, metavar="FILE")
    export.set_defaults(func=cmd_export)

    info = sub.add_parser("info", help="versions, threads, device")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as exc:
        print(f"prunekit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunekit: interrupted; resume with `prunekit train --resume RUN_DIR`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
