"""TrainingLoop: the steps of a training run on a `SupernetState`, with the method's hooks and decisions, and no
run directory. The Trainer runs it with logging and checkpoints as hooks; lottery-ticket levels (rewound to step
k), federated clients and users' own code run it directly.

One step (DESIGN.md, "The contract"):

    lr = learning_rate(step)                         a pure function of the global step
    loss = cross_entropy(model(x), y) + method.regularizer(model)
    zero_grad; loss.backward(); method.after_backward(model)     the method sees dense gradients
    state.step()                                     mask gradients, optimizer step(s), masked weights back to 0
    method.after_step(model); step += 1
    state.apply(method.on_step_end(step, ctx))       a step-level decision (masks and/or plan)
    hooks.after_step(loop)                           (Trainer: checkpoints every N steps, progress)

and at the end of each epoch: hooks.on_epoch_trained(loop, stats) (Trainer: evaluation, metrics line), then
state.sync(); state.apply(method.on_epoch_end(epoch, ctx)); hooks.after_epoch(loop) (Trainer: checkpoint).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.config import ScheduleConfig
from prunekit.data import BatchLoader
from prunekit.errors import UserError
from prunekit.measure import TrainingCostLedger, count_params
from prunekit.methods.base import Decision, Method, TrainContext
from prunekit.seeding import derived_seed
from prunekit.train.optim import set_learning_rate
from prunekit.train.schedules import learning_rate
from prunekit.train.supernet import SupernetState

DROPOUT_SEED_PURPOSE = 0xE90C


@dataclass
class EpochTally:
    """Running sums of the epoch in progress (what a mid-epoch checkpoint must carry to give the same metrics)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    segment_samples: int = 0  # global samples since the architecture last changed (for the cost ledger)
    data_time_s: float = 0.0
    elapsed_s: float = 0.0  # time spent in this epoch before a resume
    lr: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EpochTally:
        try:
            return cls(loss_sum=float(data["loss_sum"]), correct=int(data["correct"]), seen=int(data["seen"]),
                       segment_samples=int(data["segment_samples"]), data_time_s=float(data["data_time_s"]),
                       elapsed_s=float(data["elapsed_s"]), lr=float(data["lr"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"checkpoint epoch tally is malformed ({exc})") from None


class LoopHooks:
    """What a caller of the loop may add; every hook does nothing by default."""

    def after_step(self, loop: TrainingLoop) -> None:
        """After each step and its step-level decision."""

    def on_decision(self, loop: TrainingLoop, record: dict[str, Any]) -> None:
        """A decision was applied; `record` is the metrics line describing it."""

    def on_epoch_trained(self, loop: TrainingLoop, stats: dict[str, Any]) -> None:
        """The epoch's batches are done (before the method's on_epoch_end); `stats` are its training figures."""

    def after_epoch(self, loop: TrainingLoop) -> None:
        """After the method's on_epoch_end decision."""


def autocast(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast on every device (it needs no loss scaling), or nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def compiled(wrap: Callable[[nn.Module], nn.Module] | None = None,
             mode: str = "default") -> Callable[[nn.Module], nn.Module]:
    """A `SupernetState` wrap: torch.compile of the (DDP-`wrap`ped) training module. The state calls it for every
    new subnet, so each shape a decision makes is compiled afresh; dynamo's caches are reset first, since the old
    subnet's graphs are dead and would otherwise count against its recompile limit (past which it runs eager)."""

    def build(model: nn.Module) -> nn.Module:
        module = wrap(model) if wrap is not None else model
        torch.compiler.reset()
        return torch.compile(module, mode=mode)

    return build


@torch.no_grad()
def evaluate(model: nn.Module, loader: BatchLoader, amp: bool = False) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in 0..1) of `model` over the loader's batches, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.long)
    count = 0
    for images, labels in loader.iterate(0):
        with autocast(amp, loader.device):
            logits = model(images)
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
        correct += (logits.argmax(1) == labels).sum()
        count += labels.numel()
    model.train(was_training)
    return loss_sum.item() / max(1, count), correct.item() / max(1, count)


class TrainingLoop:
    """Steps [start, stop) of a run of `epochs` epochs over `loader`, on `state`, with `method`'s hooks.

    The learning rate is `learning_rate(step, ...)` of the whole run, so a loop started at step k (a rewound
    lottery ticket) follows the schedule from step k. `seed` seeds dropout and other global-RNG users once per
    epoch (the data order is the loader's own seed).
    """

    def __init__(self, state: SupernetState, method: Method, ctx: TrainContext, loader: BatchLoader, *,
                 epochs: int, lr: float, schedule: ScheduleConfig, label_smoothing: float = 0.0,
                 amp: bool = False, seed: int = 0, ledger: TrainingCostLedger | None = None,
                 hooks: LoopHooks | None = None,
                 agree: Callable[[Decision | None], Decision | None] | None = None) -> None:
        self.state, self.method, self.ctx, self.loader = state, method, ctx, loader
        self.epochs, self.base_lr, self.schedule = epochs, lr, schedule
        self.label_smoothing, self.amp, self.seed = label_smoothing, amp, seed
        self.ledger = ledger if ledger is not None else TrainingCostLedger()
        self.hooks = hooks or LoopHooks()
        # Distributed training: every process takes the decision rank 0 took (train/distributed.py).
        self.agree = agree
        self.steps_per_epoch = len(loader)
        self.step = 0
        self.epoch = 0
        self.tally = EpochTally()
        self._sums: _DeviceSums | None = None
        self._epoch_start = 0.0

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def run(self, start_step: int = 0, stop_step: int | None = None, tally: EpochTally | None = None) -> int:
        """Train from global step `start_step` to `stop_step` (default: the end); returns the step reached.

        `tally` continues an epoch interrupted at `start_step` (a mid-epoch resume: the global RNG state must
        have been restored by the caller); without it, an epoch started part-way starts with fresh sums. A
        mid-epoch start never lies at an epoch's end: the epoch-end work (evaluation, decision) is done before
        the step count moves on."""
        stop = self.total_steps if stop_step is None else stop_step
        if not 0 <= start_step <= stop <= self.total_steps:
            raise ValueError(f"steps must satisfy 0 <= start ({start_step}) <= stop ({stop}) <= "
                             f"{self.total_steps}")
        self.step = self.ctx.step = start_step
        while self.step < stop:
            epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
            self._run_epoch(epoch, in_epoch, stop, tally if self.step == start_step else None)
        return self.step

    def current_tally(self) -> EpochTally:
        """The running sums of the epoch in progress, up to date (for a mid-epoch checkpoint)."""
        if self._sums is None:
            return EpochTally(**self.tally.to_json())
        self._sums.flush_into(self.tally)
        now = EpochTally(**self.tally.to_json())
        now.elapsed_s += time.perf_counter() - self._epoch_start
        return now

    # ------------------------------------------------------------------ one epoch
    def _run_epoch(self, epoch: int, in_epoch: int, stop: int, tally: EpochTally | None) -> None:
        self.epoch = self.ctx.epoch = epoch
        if tally is None:
            torch.manual_seed(derived_seed(self.seed, DROPOUT_SEED_PURPOSE, epoch))
            tally = EpochTally()
        self.tally = tally
        self._sums = sums = _DeviceSums(tally, self.loader.device)
        start = self._epoch_start = time.perf_counter()
        batches = iter(self.loader.iterate(epoch, in_epoch))
        end_of_epoch = (epoch + 1) * self.steps_per_epoch
        while self.step < min(stop, end_of_epoch):
            fetch = time.perf_counter()
            images, labels = next(batches)
            tally.data_time_s += time.perf_counter() - fetch
            self._train_step(images, labels, sums)
            self.hooks.after_step(self)
        sums.flush_into(tally)
        self._sums = None
        tally.elapsed_s += time.perf_counter() - start
        if self.step == end_of_epoch:
            self._end_epoch(epoch, tally)

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor, sums: _DeviceSums) -> None:
        state, method = self.state, self.method
        model = state.model
        if not model.training:
            model.train()
        lr = learning_rate(self.step, self.steps_per_epoch, self.epochs, self.base_lr, self.schedule)
        set_learning_rate(state.optimizer, lr)
        with autocast(self.amp, images.device):
            logits = state.train_module(images)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        total = loss + method.regularizer(model)
        state.zero_grad()
        total.backward()
        method.after_backward(model)
        if method.take_optimizer_step(self.step + 1):
            state.step()
        method.after_step(model)
        self.step += 1
        self.ctx.step = self.step
        sums.add(loss.detach(), logits.detach(), labels)
        self.tally.lr = lr
        # the cost ledger counts the global batch (every process's share), the loss and accuracy sums this one's
        self.tally.segment_samples += self.loader.global_batch_samples((self.step - 1) % self.steps_per_epoch)
        decision = method.on_step_end(self.step, self.ctx)
        if self.agree is not None:
            decision = self.agree(decision)
        if decision is not None:
            self.apply(decision, where="step")

    def _end_epoch(self, epoch: int, tally: EpochTally) -> None:
        train_loss = tally.loss_sum / max(1, tally.seen)
        if not math.isfinite(train_loss):
            raise UserError(f"training diverged in epoch {epoch + 1} (mean loss {train_loss} by step {self.step}); "
                            "lower optim.lr, add warm-up (schedule.warmup_epochs) or check the data")
        cost = self.ledger.record_epoch(epoch, self.state.macs, tally.segment_samples, tally.elapsed_s)
        stats = {"epoch": epoch, "step": self.step, "lr": tally.lr, "train_loss": train_loss,
                 "train_accuracy": tally.correct / max(1, tally.seen), "epoch_time_s": tally.elapsed_s,
                 "data_time_s": tally.data_time_s, "macs": self.state.macs,
                 "params": count_params(self.state.model), "train_flops": cost["train_flops"]}
        self.hooks.on_epoch_trained(self, stats)
        self.state.sync()
        decision = self.method.on_epoch_end(epoch, self.ctx)
        if self.agree is not None:
            decision = self.agree(decision)
        if decision is not None:
            self.apply(decision, where="epoch")
        self.tally = EpochTally()
        self.hooks.after_epoch(self)

    # ------------------------------------------------------------------ decisions
    def apply(self, decision: Decision, where: str) -> dict[str, Any]:
        """Apply a decision through the state, close the cost ledger's segment if MACs change, tell the hooks."""
        macs_before = self.state.macs
        record: dict[str, Any] = {"kind": "decision", "epoch": self.epoch if where != "start" else -1,
                                  "step": self.step, "at": where, "method": self.method.name}
        record.update(self.state.apply(decision))
        record.update(decision.info)
        if where == "step" and self.state.macs != macs_before:
            self.ledger.record_segment(self.epoch, macs_before, self.tally.segment_samples)
            self.tally.segment_samples = 0
        self.hooks.on_decision(self, record)
        return record


class _DeviceSums:
    """The epoch's loss and correct counts accumulated on the device (no host sync per step), mirrored into the
    tally as plain numbers after each step (float32 values, so a resumed tally continues bitwise)."""

    def __init__(self, tally: EpochTally, device: torch.device) -> None:
        self.loss = torch.tensor(tally.loss_sum, dtype=torch.float32, device=device)
        self.correct = torch.tensor(tally.correct, dtype=torch.long, device=device)
        self.seen = tally.seen

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss += loss * labels.numel()
        self.correct += (logits.argmax(1) == labels).sum()
        self.seen += labels.numel()

    def flush_into(self, tally: EpochTally) -> None:
        tally.loss_sum, tally.correct, tally.seen = self.loss.item(), int(self.correct.item()), self.seen
