"""`prunekit info`: versions, threads, device."""

from __future__ import annotations

import argparse
import platform


def run(args: argparse.Namespace) -> int:
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


def register(sub: argparse._SubParsersAction) -> None:
    info = sub.add_parser("info", help="versions, threads, device")
    info.set_defaults(func=run)
