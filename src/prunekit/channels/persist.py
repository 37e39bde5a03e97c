"""Save and replay pruned architectures without pickle, and export them to ONNX.

A pruned model directory holds `model.safetensors` (the subnet's state_dict) and `pruned.json` (the registry
model spec, the channel policy and the ChannelPlan). Loading rebuilds the supernet from the registry, traces its
groups, materializes the plan and loads the tensors, so no Python object is ever unpickled. An empty plan (a
dense run) loads straight into the freshly built model, without tracing: that also works for models with layers
channel pruning does not support (e.g. GroupNorm).
"""

from __future__ import annotations

import os
import warnings
from io import BytesIO
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.channels.groups import POLICIES, channel_groups
from prunekit.channels.plan import ChannelPlan
from prunekit.channels.surgery import materialize
from prunekit.errors import UserError
from prunekit.io import load_tensors, read_json, save_tensors, write_bytes, write_json
from prunekit.measure import eval_mode

FORMAT_VERSION = 1
_SPEC_KEYS = ("name", "num_classes", "in_channels", "input_shape")


def save_pruned_model(directory: str | os.PathLike[str], model: nn.Module, plan: ChannelPlan,
                      model_spec: dict[str, Any], policy: str = "all") -> None:
    """Write directory/model.safetensors and directory/pruned.json (each atomically; tensors first).

    model_spec = {"name", "num_classes", "in_channels", "kwargs", "input_shape": [C, H, W]}; `policy` is the
    policy whose group names the plan uses ("all" covers every group name of both policies).
    """
    missing = [key for key in _SPEC_KEYS if key not in model_spec]
    if missing:
        raise UserError(f"model_spec lacks {', '.join(missing)}")
    if policy not in POLICIES:
        raise UserError(f"unknown channel policy {policy!r}; choose one of {', '.join(POLICIES)}")
    directory = Path(directory)
    save_tensors(directory / "model.safetensors", model.state_dict())
    spec = {"name": model_spec["name"], "num_classes": int(model_spec["num_classes"]),
            "in_channels": int(model_spec["in_channels"]), "kwargs": dict(model_spec.get("kwargs") or {}),
            "input_shape": [int(v) for v in model_spec["input_shape"]]}
    write_json(directory / "pruned.json",
               {"format_version": FORMAT_VERSION, "model": spec, "policy": policy, "plan": plan.to_json()})


def pruned_architecture(directory: str | os.PathLike[str]) -> tuple[nn.Module, nn.Module]:
    """(supernet, subnet) rebuilt from directory/pruned.json alone, with fresh weights: the architecture of a
    saved pruned model (the same object twice for an empty plan)."""
    from prunekit.models import create_model  # late import: the model registry imports much more

    path = Path(directory) / "pruned.json"
    record = read_json(path)
    try:
        spec, policy = record["model"], record.get("policy", "all")
        plan = ChannelPlan.from_json(record["plan"])
        input_shape = [int(v) for v in spec["input_shape"]]
        supernet = create_model(spec["name"], num_classes=int(spec["num_classes"]),
                                in_channels=int(spec["in_channels"]), **dict(spec.get("kwargs") or {}))
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{path}: malformed pruned-model record ({error!r})") from error
    if not plan.keep:  # dense: nothing to slice, so no tracing (which refuses layers it cannot slice)
        return supernet, supernet
    groups = channel_groups(supernet, torch.zeros(2, *input_shape), policy)
    return supernet, materialize(supernet, plan, groups)


def load_pruned_model(directory: str | os.PathLike[str]) -> nn.Module:
    """Rebuild a model saved by `save_pruned_model`, in eval mode, with the saved dtype (bitwise the same)."""
    directory = Path(directory)
    _, subnet = pruned_architecture(directory)
    tensors = load_tensors(directory / "model.safetensors")
    floating = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(floating) == 1:
        subnet = subnet.to(floating.pop())
    try:
        subnet.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise UserError(f"{directory / 'model.safetensors'} does not match the saved plan: "
                        f"{str(error).splitlines()[0]}") from error
    return subnet.eval()


def onnx_tolerance(expected: torch.Tensor) -> float:
    """Largest accepted max |onnx - torch|: 1e-5 + 1e-4 * max |torch output|.

    float32 kernels of the two runtimes sum in different orders, so their difference grows with the output's
    scale and the model's depth (ResNet-50 at 224 x 224 differs by about 2e-5, more than a fixed 1e-5); a real
    export bug (a wrong layer, a missing op) shows up as a difference of the order of the outputs themselves."""
    return 1e-5 + 1e-4 * float(expected.detach().abs().max()) if expected.numel() else 1e-5


def export_onnx(model: nn.Module, example_inputs: torch.Tensor, path: str | os.PathLike[str]) -> float:
    """Export `model` (eval mode) to ONNX at `path`, run it with onnxruntime, and return max |onnx - torch|.

    Raises a UserError when the difference exceeds `onnx_tolerance` (the file is then not written); the file
    is written atomically (temporary file, fsync, rename) once the check passed.
    """
    import onnxruntime

    path = Path(path)
    buffer = BytesIO()
    with eval_mode(model), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is the one we want
        expected = model(example_inputs)
        torch.onnx.export(model, (example_inputs,), buffer, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False)
    data = buffer.getvalue()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": example_inputs.detach().cpu().numpy()})
    expected = expected.detach().cpu()
    diff = float((torch.from_numpy(got) - expected).abs().max())
    tolerance = onnx_tolerance(expected)
    if not diff <= tolerance:
        raise UserError(f"ONNX export differs from PyTorch by {diff:.3g} (tolerance {tolerance:.3g} = "
                        f"1e-5 + 1e-4 * max |output|); {path} was not written")
    write_bytes(path, data)
    return diff
