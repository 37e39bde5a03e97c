"""Build Torch-Pruning's dependency graph under guard: bounded time, one-line errors, and what the trace missed.

`trace_model` runs the one traced forward and records, besides Torch-Pruning's graph:
- which Conv/Linear/norm modules ran (forward hooks) and which of them the autograd graph does not contain
  (blocks run under `torch.utils.checkpoint`, modules called through functional wrappers): `untraced`;
- the autograd nodes computed *inside* each Conv/Linear/norm module (a Linear on a 4-D input reshapes around
  its matmul, LayerNorm2d permutes around layer_norm), which the op rules must not judge as if they were
  free-standing ops: `interior`;
- for every autograd node created by a torch function: the function's name and output shape (`ops`).

Reentrant `torch.utils.checkpoint.checkpoint` runs its function under no_grad, so nothing inside it appears in the
autograd graph; during this trace (and only here) checkpointing is replaced by a direct call, which computes the
same values. Any exception raised by the graph engine becomes a one-line `UserError`; so does running past the
deadline (a `SIGALRM` timer on the main thread, plus explicit checks in our own loops).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.utils.checkpoint as checkpoint_module
import torch_pruning as tp
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.overrides import TorchFunctionMode

from prunekit.errors import UserError
from prunekit.measure import restored_modes

# Default bound on one model's channel analysis (trace, groups, verification), in seconds.
ANALYSIS_TIME_LIMIT_S = 60.0

TRACKED_MODULES = (_ConvNd, nn.Linear, _BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.PReLU,
                   nn.modules.instancenorm._InstanceNorm)


class AnalysisTimeout(Exception):
    """Raised inside the analysis when the deadline passes (turned into a UserError by `Deadline.guard`)."""


@dataclass
class Deadline:
    """A wall-clock limit on one analysis; `stage` says where it is, for the error message."""

    limit_s: float
    start: float = field(default_factory=time.monotonic)
    stage: str = "starting"

    def remaining(self) -> float:
        return self.limit_s - (time.monotonic() - self.start)

    def check(self, where: str | None = None) -> None:
        if where is not None:
            self.stage = where
        if self.remaining() <= 0:
            raise AnalysisTimeout(self.stage)

    def error(self) -> UserError:
        return UserError(f"channel analysis stopped after {self.limit_s:g} s (the limit) while {self.stage}; "
                         "the graph engine cannot resolve this model's channel structure in bounded time")

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Interrupt Torch-Pruning's own loops at the deadline (main thread only: SIGALRM)."""
        use_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
        previous = None
        if use_alarm:
            def on_alarm(_signum, _frame):
                raise AnalysisTimeout(self.stage)
            previous = signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, max(self.remaining(), 1e-3))
        try:
            yield
        except AnalysisTimeout:
            raise self.error() from None
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)


@dataclass
class Trace:
    graph: tp.DependencyGraph
    untraced: list[str]
    interior: set[int]
    ops: dict[int, tuple[str, tuple[int, ...]]]
    input_ids: set[int]
    cat_sizes: dict[int, list[int]] = field(default_factory=dict)
    layout: dict[int, str | None] = field(default_factory=dict)  # grad_fn id -> why its layout chain blocks


class _OpRecorder(TorchFunctionMode):
    """Record (function name, output shape) per autograd node created by a torch function."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: dict[int, tuple[str, tuple[int, ...]]] = {}
        self.cat_sizes: dict[int, list[int]] = {}  # torch.cat node -> sizes of its inputs along the cat dim
        self.keep: list[object] = []  # keep the grad_fns alive so their ids stay unique during the trace

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        outputs = result if isinstance(result, (tuple, list)) else (result,)
        if getattr(func, "__name__", "") in ("cat", "concat", "concatenate") and args and isinstance(
                args[0], (list, tuple)) and getattr(result, "grad_fn", None) is not None:
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0) if kwargs is not None else (
                args[1] if len(args) > 1 else 0)
            self.cat_sizes[id(result.grad_fn)] = [int(t.shape[dim]) for t in args[0]]
        for out in outputs:
            grad_fn = getattr(out, "grad_fn", None) if isinstance(out, torch.Tensor) else None
            if grad_fn is not None and id(grad_fn) not in self.ops:
                self.ops[id(grad_fn)] = (getattr(func, "__name__", str(func)), tuple(out.shape))
                self.keep.append(grad_fn)
        return result


def _direct_checkpoint(function, *args, use_reentrant=None, context_fn=None, determinism_check=None,
                       debug=None, preserve_rng_state=True, **kwargs):
    return function(*args, **kwargs)


@contextmanager
def _checkpointing_bypassed() -> Iterator[None]:
    original = checkpoint_module.checkpoint
    checkpoint_module.checkpoint = _direct_checkpoint
    try:
        yield
    finally:
        checkpoint_module.checkpoint = original


def _guarded_reshape_mapping(graph, node) -> None:
    """Torch-Pruning's reshape index mapping, leaving the node unmapped where it divides by zero (a view into
    more dims than 4, as in a channel shuffle); `shuffle.py` and the op rules handle such reshapes."""
    try:
        _original_reshape_mapping(graph, node)
    except ZeroDivisionError:
        return


_original_reshape_mapping = tp.dependency.index_mapping.update_reshape_index_mapping


@contextmanager
def _reshape_mapping_guarded() -> Iterator[None]:
    tp.dependency.index_mapping.update_reshape_index_mapping = _guarded_reshape_mapping
    try:
        yield
    finally:
        tp.dependency.index_mapping.update_reshape_index_mapping = _original_reshape_mapping


@contextmanager
def _tracing_state(model: nn.Module) -> Iterator[None]:
    """Torch-Pruning switches the model to eval and needs grads: restore modes and requires_grad afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        with restored_modes(model), torch.enable_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _interior(output_fn: object, stop: set[int]) -> set[int]:
    """ids of the autograd nodes between a module's inputs (`stop`) and its output node, output node excluded."""
    found: set[int] = set()
    stack = [fn for fn, _ in getattr(output_fn, "next_functions", ()) if fn is not None]
    while stack:
        fn = stack.pop()
        if id(fn) in stop or id(fn) in found or "AccumulateGrad" in type(fn).__name__:
            continue
        found.add(id(fn))
        stack.extend(f for f, _ in getattr(fn, "next_functions", ()) if f is not None)
    return found


def _call(model: nn.Module, inputs: torch.Tensor) -> object:
    return model(inputs)  # Torch-Pruning's default would unpack the batch as positional arguments


def trace_model(model: nn.Module, example_inputs: torch.Tensor, deadline: Deadline) -> Trace:
    """Torch-Pruning's DependencyGraph of `model` plus what the trace missed (see the module docstring)."""
    names = {module: name for name, module in model.named_modules()}
    ran: dict[nn.Module, int] = {}
    interior: set[int] = set()
    pending: dict[nn.Module, set[int]] = {}

    def before(module, inputs):
        pending[module] = {id(t.grad_fn) for t in inputs if isinstance(t, torch.Tensor) and t.grad_fn is not None}

    def after(module, _inputs, output):
        ran[module] = ran.get(module, 0) + 1
        if isinstance(output, torch.Tensor) and output.grad_fn is not None:
            interior.update(_interior(output.grad_fn, pending.pop(module, set())))

    tracked = [m for m in model.modules() if isinstance(m, TRACKED_MODULES)]
    handles = [m.register_forward_pre_hook(before) for m in tracked]
    handles += [m.register_forward_hook(after) for m in tracked]
    inputs = example_inputs.detach().clone().requires_grad_(True)
    recorder = _OpRecorder()
    deadline.stage = "tracing the model with Torch-Pruning's DependencyGraph"
    try:
        with _tracing_state(model), _checkpointing_bypassed(), _reshape_mapping_guarded(), deadline.guard(), recorder:
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=inputs, forward_fn=_call,
                                                          verbose=False)
    except UserError:
        raise
    except Exception as error:  # the graph engine's own failure, reported in one line
        raise engine_error("building the dependency graph", error) from error
    finally:
        for handle in handles:
            handle.remove()
    untraced = [names[m] for m in tracked if m in ran and m not in graph.module2node]
    return Trace(graph, untraced, interior, recorder.ops, {id(inputs)}, recorder.cat_sizes)


def engine_error(where: str, error: BaseException) -> UserError:
    text = str(error).strip().splitlines()
    detail = f"{type(error).__name__}: {text[0][:160]}" if text else type(error).__name__
    return UserError(f"channel analysis failed while {where} ({detail}); `prunekit inspect` lists what was found, "
                     "or keep this model dense")
