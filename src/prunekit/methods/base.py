"""The contract between a training loop and a pruning method (DESIGN.md, "The contract").

A method composes parts (criterion, allocation, selection, schedule, regularizer, regrowth) and implements
these hooks. prunekit's Trainer calls them; a user's own loop can call them too:

    method.on_train_start(ctx)
    for epoch in range(epochs):
        for x, y in batches:
            loss = criterion(model(x), y) + method.regularizer(model)
            loss.backward(); method.after_backward(model)
            optimizer.step(); method.after_step(model); optimizer.zero_grad()
        decision = method.on_epoch_end(epoch, ctx)   # apply it (the Trainer does this for you)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class TrainContext:
    """What a method may look at. `model` is the network being trained now (the subnet, once pruned)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    steps_per_epoch: int
    epochs: int
    example_inputs: torch.Tensor
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # Yields (images, labels) training batches without augmentation; for criteria that look at activations.
    train_batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]] | None = None
    # The full-width model whose channels a ChannelPlan indexes, its channel groups (computed once by the
    # trainer under the method's `channel_policy`) and the plan in force (None: every channel is kept).
    supernet: nn.Module | None = None
    groups: list[Any] | None = None  # list[prunekit.channels.ChannelGroup]
    plan: Any | None = None  # prunekit.channels.ChannelPlan
    epoch: int = 0
    # Records one event line in metrics.jsonl.
    log: Callable[[dict[str, Any]], None] = lambda record: None
    seed: int = 0


@dataclass
class Decision:
    """What a method decided at the end of an epoch: a new channel plan, new weight masks, or both."""

    plan: Any | None = None  # prunekit.channels.ChannelPlan
    masks: dict[str, torch.Tensor] | None = None
    info: dict[str, Any] = field(default_factory=dict)  # logged with the event


class Method:
    """Dense training: every hook does nothing. Subclasses override what they need."""

    name = "dense"
    # "internal" or "all" for methods that return channel plans (see DESIGN.md, channel groups); None otherwise.
    channel_policy: str | None = None
    # True when on_step_end may return a channel plan (the trainer then syncs subnet -> supernet before it).
    wants_step_sync: bool = False

    def on_train_start(self, ctx: TrainContext) -> Decision | None:
        """Called before the first step, and again after a resume with the restored state loaded.

        May return an initial Decision (e.g. CHEX's initial uniform prune); the trainer applies it only in a
        fresh run, since a resumed run restores the plan in force from its checkpoint."""
        return None

    def regularizer(self, model: nn.Module) -> torch.Tensor | float:
        """A term added to the loss, or 0."""
        return 0.0

    def after_backward(self, model: nn.Module) -> None:
        """Gradients are available."""

    def after_step(self, model: nn.Module) -> None:
        """The optimizer has stepped (re-apply weight masks here)."""

    def on_step_end(self, step: int, ctx: TrainContext) -> Decision | None:
        """Called after optimizer step number `step` (counted from 1 over the whole run; `after_step` has run).

        Return a Decision to change masks or the plan mid-epoch (RigL every dT steps, JST every few steps); it is
        applied exactly like an `on_epoch_end` decision. The trainer syncs the subnet into the supernet before
        calling this only for methods with `wants_step_sync = True` (a plan change needs current supernet values)."""
        return None

    def on_model_changed(self, model: nn.Module) -> None:
        """The trained module was replaced (a new subnet after a decision, or a restored one on resume): drop
        anything cached from the old module (its layers, parameters, hooks)."""

    def on_epoch_end(self, epoch: int, ctx: TrainContext) -> Decision | None:
        """`epoch` counts from 0; return a Decision to change the network.

        For structured methods the trainer has just absorbed the subnet into `ctx.supernet`: kept channels hold
        their current values, pruned ones their most recently used values."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state needed to resume (never pickled)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
