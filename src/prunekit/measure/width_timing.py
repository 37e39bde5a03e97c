"""Time each prunable channel group's layers at candidate widths on this device, once, cached in a JSON file.

A group's time at width w is the sum, over the convs / linears whose weights carry the group (its producers'
output channels, its consumers' input channels; a depthwise producer shrinks in, out and groups together), of
one forward + backward (weight and input gradients) of that layer alone at batch `batch`, with the group at
width w and every other dim at full width; each width's time is the fastest of a few interleaved rounds.
Approximations (stated): norms, activations and the other groups' widths are left out, so the table ranks widths
of one group; it does not predict the whole network's time. Under the internal policy of a ResNet the other dims
are residual streams, which stay full, so there they are exact.

Identical layers (same shapes, same varying dim) are timed once, in any model: the cache maps an op's key to its
per-width seconds, one file per (device, torch version, threads, batch, dtype, memory format) under
`cache_root()/widths/`. A missing, unreadable or mismatched cache file is re-measured and rewritten (atomically).

    timer = WidthTimer(batch=32)
    tables = timer.group_tables(supernet, groups, example_inputs)   # {group name: {width: seconds}}
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from prunekit.channels.groups_base import ChannelGroup, is_depthwise
from prunekit.errors import UserError
from prunekit.io import read_json, write_json
from prunekit.memory_format import to_channels_last

CACHE_VERSION = 2  # 2: fastest of the rounds (1 took the median)
ALL_WIDTHS_UP_TO = 64  # every width up to this is timed; wider ones at multiples of WIDE_STEP (see below)
WIDE_STEP = 8
ROUNDS = 3


def cache_root() -> Path:
    """env PRUNEKIT_CACHE, else ~/.cache/prunekit (as the image-folder cache)."""
    env = os.environ.get("PRUNEKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prunekit"


def device_name(device: torch.device) -> str:
    """The accelerator's name, or the CPU model (from /proc/cpuinfo where there is one)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def candidate_widths(size: int) -> list[int]:
    """Widths timed for a group of `size` channels: every width up to ALL_WIDTHS_UP_TO (64: all of a CIFAR
    ResNet's), then multiples of WIDE_STEP (8: the finest block of CPU and tensor-core kernels) and the size.
    Timing every width of a 512-wide layer would take minutes; beyond 64 only multiples of 8 can be on a grid."""
    return sorted(set(range(1, min(size, ALL_WIDTHS_UP_TO) + 1)) | set(range(WIDE_STEP, size + 1, WIDE_STEP))
                  | {size})


@dataclass(frozen=True)
class LayerOp:
    """One conv / linear layer of a group, as a shape: `spec` rebuilds it, `vary` says which dim the group sets
    ("out", "in" or "depthwise"), `per_channel` positions per group channel (e.g. a flatten into a linear),
    `fixed` the positions along that dim that are not the group's (a concatenation)."""

    spec: tuple[tuple[str, Any], ...]
    vary: str
    per_channel: int
    fixed: int

    @property
    def key(self) -> str:
        return json.dumps([dict(self.spec), self.vary, self.per_channel, self.fixed], sort_keys=True)

    def dim_at(self, width: int) -> int:
        return self.fixed + width * self.per_channel

    def build(self, width: int, batch: int, device: torch.device,
              memory_format: torch.memory_format) -> tuple[nn.Module, torch.Tensor]:
        """The layer with the group at `width` and a random input batch for it."""
        s = dict(self.spec)
        n = self.dim_at(width)
        if s["kind"] == "linear":
            in_f, out_f = (n if self.vary == "in" else s["in"]), (n if self.vary == "out" else s["out"])
            return nn.Linear(in_f, out_f, bias=s["bias"]).to(device), torch.randn(batch, in_f, device=device)
        in_c = n if self.vary in ("in", "depthwise") else s["in"]
        out_c = n if self.vary in ("out", "depthwise") else s["out"]
        groups = n if self.vary == "depthwise" else s["groups"]
        conv = nn.Conv2d(in_c, out_c, s["kernel"], s["stride"], s["padding"], s["dilation"], groups, s["bias"])
        x = torch.randn(batch, in_c, *s["hw"], device=device).to(memory_format=memory_format)
        conv = conv.to(device)
        # Timed as the trainer runs it: a layer that crashes under channels_last stays NCHW (memory_format.py).
        return (to_channels_last(conv) if memory_format == torch.channels_last else conv), x


def _spec(module: nn.Module, input_shape: Sequence[int]) -> tuple[tuple[str, Any], ...] | None:
    if isinstance(module, nn.Linear):
        return (("kind", "linear"), ("in", module.in_features), ("out", module.out_features),
                ("bias", module.bias is not None))
    if isinstance(module, nn.Conv2d) and isinstance(module.padding, tuple):
        return (("kind", "conv2d"), ("in", module.in_channels), ("out", module.out_channels),
                ("kernel", list(module.kernel_size)), ("stride", list(module.stride)),
                ("padding", list(module.padding)), ("dilation", list(module.dilation)),
                ("groups", module.groups), ("bias", module.bias is not None), ("hw", list(input_shape[-2:])))
    return None  # other layers (Conv1d/3d, string padding) are not timed: their groups get no table


def input_shapes(model: nn.Module, example_inputs: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """{module name: per-sample input shape} of every conv / linear, from one forward of one sample."""
    shapes: dict[str, tuple[int, ...]] = {}

    def recorder(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:  # returns None: output unchanged
            shapes.setdefault(name, tuple(args[0].shape[1:]))
        return record

    hooks = [module.register_forward_hook(recorder(name)) for name, module in model.named_modules()
             if isinstance(module, _ConvNd | nn.Linear)]
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            model(example_inputs[:1])
            model.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def group_ops(model: nn.Module, group: ChannelGroup, shapes: Mapping[str, tuple[int, ...]]) -> list[LayerOp] | None:
    """The LayerOps whose time depends on this group's width; None when one of its layers cannot be timed."""
    modules = dict(model.named_modules())
    ops: list[LayerOp] = []
    for piece in group.slices:
        module = modules.get(piece.module)
        if piece.tensor != "weight" or not isinstance(module, _ConvNd | nn.Linear) or piece.dim not in (0, 1):
            continue
        spec = _spec(module, shapes.get(piece.module, ()))
        if spec is None or piece.module not in shapes:
            return None
        depthwise = isinstance(module, _ConvNd) and is_depthwise(module)
        if depthwise and piece.dim == 1:
            continue  # a depthwise weight's dim 1 has size 1; its width is dim 0's
        vary = "depthwise" if depthwise else ("out" if piece.dim == 0 else "in")
        full = module.weight.shape[0] if piece.dim == 0 else module.weight.shape[1] * (
            module.groups if isinstance(module, _ConvNd) else 1)
        if isinstance(module, _ConvNd) and module.groups > 1 and not depthwise:
            return None  # grouped convs: widths move in every conv group together; not timed
        per_channel = max(1, len(piece.positions) // max(1, len(piece.channels)))
        ops.append(LayerOp(spec, vary, per_channel, full - group.size * per_channel))
    return ops


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_op(op: LayerOp, widths: Sequence[int], batch: int, device: torch.device,
            memory_format: torch.memory_format, rounds: int = ROUNDS) -> dict[int, float]:
    """Fastest of `rounds` forward + backward passes of `op` at each width (the minimum: on a shared machine
    other processes only ever add time); rounds interleave the widths so that a slow spell hits all alike."""
    built = {w: op.build(w, batch, device, memory_format) for w in widths}

    for _, x in built.values():
        x.requires_grad_(True)  # inside a network every layer but the first also computes its input's gradient

    def step(w: int) -> None:
        module, x = built[w]
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).sum().backward()

    for w in widths:  # warm-up: allocator, oneDNN primitive creation
        step(w)
    samples: dict[int, list[float]] = {w: [] for w in widths}
    for _ in range(rounds):
        for w in widths:
            _synchronize(device)
            start = time.perf_counter()
            step(w)
            _synchronize(device)
            samples[w].append(time.perf_counter() - start)
    return {w: min(s) for w, s in samples.items()}


OpTimer = Callable[[LayerOp, Sequence[int]], dict[int, float]]


class WidthTimer:
    """Per-group width timings for one device, batch and memory format, cached under `cache_dir`.

    `op_timer` replaces the real timing (tests inject a table); the cache is still read and written."""

    def __init__(self, batch: int, device: torch.device | str = "cpu", channels_last: bool = False,
                 cache_dir: str | os.PathLike[str] | None = None, op_timer: OpTimer | None = None,
                 rounds: int = ROUNDS) -> None:
        if batch < 1:
            raise UserError(f"width timing batch must be >= 1, got {batch}")
        self.batch, self.device = batch, torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "widths"
        self.rounds = rounds
        self.op_timer = op_timer or (lambda op, widths: time_op(op, widths, self.batch, self.device,
                                                                self.memory_format, self.rounds))
        self.measured: list[str] = []  # op keys timed (not read from the cache) by this object

    def key(self) -> dict[str, Any]:
        return {"version": CACHE_VERSION, "device": device_name(self.device), "device_type": self.device.type,
                "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": self.batch,
                "dtype": "float32", "channels_last": self.memory_format == torch.channels_last}

    def cache_path(self) -> Path:
        digest = hashlib.sha256(json.dumps(self.key(), sort_keys=True).encode()).hexdigest()[:16]
        return self.cache_dir / f"{digest}.json"

    def _load(self) -> dict[str, dict[int, float]]:
        """The cached op tables; a missing file is empty, a bad or mismatched one is discarded with a warning."""
        path = self.cache_path()
        if not path.exists():
            return {}
        try:
            data = read_json(path)
            if not isinstance(data, dict) or data.get("key") != self.key() or not isinstance(data.get("ops"), dict):
                raise UserError("its key does not match this device / torch / threads / batch")
            return {str(k): {int(w): float(t) for w, t in table.items()} for k, table in data["ops"].items()}
        except (UserError, ValueError, TypeError, AttributeError) as error:
            warnings.warn(f"width timing cache {path} is unusable ({error}); measuring again", stacklevel=2)
            return {}

    def op_tables(self, ops: Sequence[LayerOp], sizes: Mapping[str, int]) -> dict[str, dict[int, float]]:
        """{op key: {width: seconds}} for `ops` (sizes: op key -> the group size), from the cache or measured."""
        cached = self._load()
        tables: dict[str, dict[int, float]] = {}
        for op in ops:
            if op.key in tables:
                continue
            widths = candidate_widths(sizes[op.key])
            known = cached.get(op.key)
            if known is None or any(w not in known for w in widths):
                known = {int(w): float(t) for w, t in self.op_timer(op, widths).items()}
                cached[op.key] = known
                self.measured.append(op.key)
            tables[op.key] = known
        if self.measured:
            write_json(self.cache_path(), {"key": self.key(), "ops": {
                k: {str(w): t for w, t in sorted(table.items())} for k, table in cached.items()}})
        return tables

    def group_tables(self, model: nn.Module, groups: Sequence[ChannelGroup],
                     example_inputs: torch.Tensor) -> dict[str, dict[int, float]]:
        """{group name: {width: seconds}}: the sum of the group's layer times at each candidate width. Groups
        with a layer that cannot be timed (grouped convs, 1d/3d convs) are left out (they are not rounded)."""
        shapes = input_shapes(model, example_inputs)
        per_group = {g.name: group_ops(model, g, shapes) for g in groups}
        sizes = {op.key: g.size for g in groups for op in (per_group[g.name] or [])}
        all_ops = [op for ops in per_group.values() for op in (ops or [])]
        tables = self.op_tables(all_ops, sizes)
        out: dict[str, dict[int, float]] = {}
        for group in groups:
            ops = per_group[group.name]
            if not ops:
                continue
            out[group.name] = {w: sum(tables[op.key][w] for op in ops) for w in candidate_widths(group.size)}
        return out


__all__ = ["LayerOp", "WidthTimer", "cache_root", "candidate_widths", "device_name", "group_ops", "input_shapes",
           "time_op"]
