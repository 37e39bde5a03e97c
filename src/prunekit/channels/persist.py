"""Save and replay pruned architectures without pickle, and export them to ONNX.

A pruned model directory holds `model.safetensors` (the subnet's state_dict) and `pruned.json` (the registry
model spec, the channel policy and the ChannelPlan). Loading rebuilds the supernet from the registry, traces its
groups, materializes the plan and loads the tensors, so no Python object is ever unpickled. An empty plan (a
dense run) loads straight into the freshly built model, without tracing: that also works for models with layers
channel pruning does not support (e.g. GroupNorm).

Trust model: loading runs no code named in the files. `pruned.json` may name a registry model only; a run of a
user factory ("package.module:function") loads only when the caller passes the factory itself (`model_fn=`),
having decided to trust it. Every number in the record is range-checked and the model's size is counted on the
meta device before any memory is allocated.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.channels.groups import POLICIES, channel_groups
from prunekit.channels.plan import ChannelPlan
from prunekit.channels.surgery import materialize
from prunekit.errors import UserError
from prunekit.io import check_plain_value, load_tensors, read_json, save_tensors, write_bytes, write_json
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


MAX_CLASSES = 100_000
MAX_CHANNELS = 4096
MAX_SIDE = 8192
MAX_SAMPLE_VALUES = 1 << 24  # C * H * W of one input sample
MAX_PARAMETERS = 1 << 31  # elements of the rebuilt supernet (8 GiB of float32)
ModelFn = Callable[..., nn.Module]


def _bounded_int(value: Any, what: str, low: int, high: int, path: Path) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise UserError(f"{path}: {what} must be an integer in [{low}, {high}], got {str(value)[:40]!r}")
    return value


def _check_spec(spec: Any, path: Path) -> dict[str, Any]:
    """The model spec of a pruned.json, every field type- and range-checked."""
    if not isinstance(spec, dict):
        raise UserError(f"{path}: 'model' must be an object")
    name = spec.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise UserError(f"{path}: model.name must be a non-empty string")
    in_channels = _bounded_int(spec.get("in_channels"), "model.in_channels", 1, MAX_CHANNELS, path)
    shape = spec.get("input_shape")
    if not isinstance(shape, list) or len(shape) != 3:
        raise UserError(f"{path}: model.input_shape must be a list [C, H, W]")
    shape = [_bounded_int(v, "model.input_shape entries", 1, MAX_SIDE, path) for v in shape]
    if shape[0] != in_channels or math.prod(shape) > MAX_SAMPLE_VALUES:
        raise UserError(f"{path}: model.input_shape {shape} must start with in_channels ({in_channels}) and hold "
                        f"at most {MAX_SAMPLE_VALUES} values")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise UserError(f"{path}: model.kwargs must be an object")
    check_plain_value(kwargs, f"{path}: model.kwargs")
    return {"name": name, "num_classes": _bounded_int(spec.get("num_classes"), "model.num_classes", 1, MAX_CLASSES,
                                                      path),
            "in_channels": in_channels, "input_shape": shape, "kwargs": kwargs}


def read_pruned_record(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """directory/pruned.json, checked: format version, model spec (types and ranges), policy and plan."""
    path = Path(directory) / "pruned.json"
    record = read_json(path)
    if not isinstance(record, dict):
        raise UserError(f"{path}: not a pruned-model record (expected a JSON object)")
    version = record.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise UserError(f"{path}: format_version {repr(version)[:20]} is not supported "
                        f"(this prunekit reads version {FORMAT_VERSION})")
    policy = record.get("policy", "all")
    if policy not in POLICIES:
        raise UserError(f"{path}: unknown channel policy {str(policy)[:40]!r}; expected one of {', '.join(POLICIES)}")
    plan = ChannelPlan.from_json(record.get("plan"))
    return {"model": _check_spec(record.get("model"), path), "policy": policy, "plan": plan}


def _factory(name: str, model_fn: ModelFn | None, path: Path) -> ModelFn:
    """The registry factory `name`, or the caller's `model_fn`; a user factory named in the file is never
    imported here."""
    from prunekit.models import MODELS  # late import: the model registry imports much more
    from prunekit.models.registry import is_user_factory

    if model_fn is not None:
        if not callable(model_fn):
            raise UserError(f"model_fn must be a callable model factory, got {type(model_fn).__name__}")
        return model_fn
    if is_user_factory(name):
        raise UserError(f"{path} names the user factory {name[:200]!r}; loading never imports code named in a file: "
                        "pass the factory yourself, prunekit.load(run, model_fn=...), or `prunekit export "
                        "--trust-factory` if you trust this run directory")
    return MODELS.get(name)


def _build_supernet(spec: dict[str, Any], model_fn: ModelFn | None, path: Path) -> nn.Module:
    """The full-width model of `spec`; its size is counted on the meta device first, so a crafted record cannot
    allocate unbounded memory."""
    from prunekit.models.registry import create_model_with

    factory = _factory(spec["name"], model_fn, path)
    arguments = dict(num_classes=spec["num_classes"], in_channels=spec["in_channels"], **spec["kwargs"])
    if model_fn is None:  # a caller's own factory is trusted (and may do things the meta device cannot)
        with torch.device("meta"):
            meta = create_model_with(factory, spec["name"], **arguments)
        size = sum(t.numel() for t in [*meta.parameters(), *meta.buffers()])
        if size > MAX_PARAMETERS:
            raise UserError(f"{path}: the model it describes has {size:,} parameters (limit {MAX_PARAMETERS:,})")
    return create_model_with(factory, spec["name"], **arguments)


def pruned_architecture(directory: str | os.PathLike[str],
                        model_fn: ModelFn | None = None) -> tuple[nn.Module, nn.Module]:
    """(supernet, subnet) rebuilt from directory/pruned.json alone, with fresh weights: the architecture of a
    saved pruned model (the same object twice for an empty plan).

    Only registry models are built from the file; `model_fn(num_classes=, in_channels=, **kwargs)` replaces the
    factory the file names (required for a run of a user factory)."""
    path = Path(directory) / "pruned.json"
    record = read_pruned_record(directory)
    spec, plan = record["model"], record["plan"]
    supernet = _build_supernet(spec, model_fn, path)
    if not plan.keep:  # dense: nothing to slice, so no tracing (which refuses layers it cannot slice)
        return supernet, supernet
    groups = channel_groups(supernet, torch.zeros(2, *spec["input_shape"]), record["policy"])
    try:
        return supernet, materialize(supernet, plan, groups)
    except (KeyError, IndexError, ValueError, RuntimeError) as error:
        raise UserError(f"{path}: the channel plan does not fit model {spec['name']!r} ({error!r})"[:400]) from error


def load_pruned_model(directory: str | os.PathLike[str], model_fn: ModelFn | None = None) -> nn.Module:
    """Rebuild a model saved by `save_pruned_model`, in eval mode, with the saved dtype (bitwise the same).

    Runs no code named in the files: see `pruned_architecture` for `model_fn`."""
    directory = Path(directory)
    _, subnet = pruned_architecture(directory, model_fn)
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
