"""Wall-clock latency of inference and of one training step (median and 10th/90th percentiles)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.measure._modes import eval_mode
from prunekit.memory_format import to_channels_last


@dataclass
class LatencyResult:
    """Timings in milliseconds per call (one call = one batch of `batch_size` samples)."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    batch_size: int
    threads: int  # torch intra-op threads used
    channels_last: bool
    repeats: int
    device: str = "cpu"

    # p90 / p10 above this means the calls did not take a steady time: something else was using the machine.
    NOISY_SPREAD = 1.5

    @property
    def spread(self) -> float:
        """p90 / p10: close to 1 on a quiet machine."""
        return self.p90_ms / self.p10_ms if self.p10_ms > 0 else float("inf")

    @property
    def noisy(self) -> bool:
        return self.spread > self.NOISY_SPREAD

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Use `threads` intra-op threads inside the block (None: leave as is); restore the previous count after."""
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_calls(call: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Run `call` warmup times untimed, then `repeats` times; return each timed call's milliseconds."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        call()
    _synchronize(device)
    times_ms = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        _synchronize(device)
        times_ms.append((time.perf_counter() - start) * 1000.0)
    return times_ms


def _result(times_ms: list[float], batch_size: int, threads: int, channels_last: bool, device: torch.device):
    p10, median, p90 = np.percentile(np.asarray(times_ms), [10, 50, 90])
    return LatencyResult(
        median_ms=float(median),
        p10_ms=float(p10),
        p90_ms=float(p90),
        batch_size=batch_size,
        threads=threads,
        channels_last=channels_last,
        repeats=len(times_ms),
        device=str(device),
    )


def measure_latency(
    model: nn.Module,
    example_inputs: torch.Tensor,
    *,
    warmup: int = 5,
    repeats: int = 30,
    threads: int | None = None,
    channels_last: bool = False,
) -> LatencyResult:
    """Inference latency of `model(example_inputs)` in eval mode under no_grad.

    With `channels_last`, a copy of the model and the inputs are converted to NHWC memory format (the model
    itself is not touched). Torch's thread count is restored afterwards.
    """
    device = example_inputs.device
    if channels_last:
        model = to_channels_last(copy.deepcopy(model))
        example_inputs = example_inputs.contiguous(memory_format=torch.channels_last)
    with torch_threads(threads) as used_threads, eval_mode(model), torch.no_grad():
        times_ms = _time_calls(lambda: model(example_inputs), device, warmup, repeats)
    return _result(times_ms, int(example_inputs.shape[0]), used_threads, channels_last, device)


def measure_train_step(
    model: nn.Module,
    example_inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    warmup: int = 3,
    repeats: int = 10,
    threads: int | None = None,
    channels_last: bool = False,
    lr: float = 0.01,
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
) -> LatencyResult:
    """Time of one training step (forward, cross-entropy, backward, plain SGD step) in train mode.

    Runs on a deep copy, so the model's weights, BN statistics and gradients are left as they were.
    `extra_loss(model)`, if given, is added to the loss in every step (e.g. a method's regularizer), so its cost
    is timed too.
    """
    device = example_inputs.device
    trained = copy.deepcopy(model).train()
    if channels_last:
        trained = to_channels_last(trained)
        example_inputs = example_inputs.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(trained.parameters(), lr=lr)
    loss_function = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(trained(example_inputs), labels)
        if extra_loss is not None:
            loss = loss + extra_loss(trained)
        loss.backward()
        optimizer.step()

    with torch_threads(threads) as used_threads:
        times_ms = _time_calls(step, device, warmup, repeats)
    return _result(times_ms, int(example_inputs.shape[0]), used_threads, channels_last, device)
