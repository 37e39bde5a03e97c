"""The contract between a training loop and a pruning method (DESIGN.md, "The contract").

A method composes parts (criterion, allocation, selection, schedule, regularizer, regrowth) and implements
these hooks. `prunekit.train.loop.TrainingLoop` calls them (the Trainer uses it); a user's own loop can too:

    state.apply(method.on_train_start(ctx))
    for epoch in range(epochs):
        for x, y in batches:
            loss = criterion(state.model(x), y) + method.regularizer(state.model)
            state.optimizer.zero_grad(); loss.backward()
            method.after_backward(state.model)     # dense gradients (RigL reads them here)
            state.mask_gradients()                 # then masked weights get no gradient
            state.optimizer.step(); state.enforce_masks(); method.after_step(state.model)
            state.apply(method.on_step_end(step, ctx))
        state.sync()
        state.apply(method.on_epoch_end(epoch, ctx))

A method never touches modules or optimizers: it returns a `Decision` (a channel plan, weight masks, or both)
and `SupernetState.apply` carries it out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class TrainContext:
    """What a method may look at. `model` is the network being trained now (the subnet, once pruned).

    Kept up to date by `SupernetState`: `model`, `optimizer`, `plan` and `masks` change when a decision is applied;
    `epoch` and `step` (optimizer steps taken so far) are set by the training loop."""

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    steps_per_epoch: int
    epochs: int
    example_inputs: torch.Tensor
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # Yields (images, labels) training batches without augmentation; for criteria that look at activations.
    train_batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]] | None = None
    # Yields held-out validation batches (data.val_fraction or the dataset's own split); None when there are none.
    val_batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]] | None = None
    # The full-width model whose channels a ChannelPlan indexes, its channel groups (computed once by the
    # trainer under the method's `channel_policy`) and the plan in force (None: every channel is kept).
    supernet: nn.Module | None = None
    groups: list[Any] | None = None  # list[prunekit.channels.ChannelGroup]
    plan: Any | None = None  # prunekit.channels.ChannelPlan
    # The weight masks in force, full width (prunekit.weights.WeightMasks), and those of `model` (sliced to the
    # plan's kept channels); None when no method has set masks.
    masks: Any | None = None
    model_masks: Any | None = None
    epoch: int = 0
    step: int = 0
    # Records one event line in metrics.jsonl.
    log: Callable[[dict[str, Any]], None] = lambda record: None
    # Writes the subnet's current weights into the supernet (done before every on_epoch_end; call it in
    # on_step_end before reading ctx.supernet).
    sync: Callable[[], None] = lambda: None
    seed: int = 0


@dataclass
class ChannelContext(TrainContext):
    """The context of a method with a `channel_policy` (what `SupernetState.context` returns then): `supernet`
    and `groups` are always set. `plan` is None until the first plan is applied."""

    supernet: nn.Module = None  # type: ignore[assignment]  # always set by SupernetState
    groups: list[Any] = field(default_factory=list)


@dataclass
class Decision:
    """What a method decided: a new channel plan, new weight masks, or both.

    `masks` maps parameter names to boolean masks (True = active); tensors not named keep their masks. They are
    in the coordinates of the model being trained (`ctx.model`), or of the supernet when the decision also
    carries a plan. The state applies them: masked weights become zero and stay zero, and optimizer state is
    zeroed wherever a mask changes."""

    plan: Any | None = None  # prunekit.channels.ChannelPlan
    masks: dict[str, torch.Tensor] | None = None
    info: dict[str, Any] = field(default_factory=dict)  # logged with the event
    # With a plan: {group: supernet channels} whose optimizer state (momentum, Adam moments) is zeroed before the
    # new subnet gets its sliced state (CHEX: regrown channels start without their old momentum).
    reset_channels: dict[str, list[int]] | None = None


class Method:
    """Dense training: every hook does nothing. Subclasses override what they need."""

    name = "dense"
    summary = ""  # one line for `prunekit methods`
    paper = ""  # the paper it implements (authors, venue, year)
    # "internal" or "all" for methods that return channel plans (see DESIGN.md, channel groups); None otherwise.
    channel_policy: str | None = None
    # Whether the state trains `method_parameters()` with the training loss at every step (False: the method
    # steps its own optimizer, e.g. JST's alphas on validation batches).
    train_parameters_with_loss: bool = True

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

    def take_optimizer_step(self, step: int) -> bool:
        """Whether optimizer step number `step` (from 1) is taken; False skips it (RigL takes no optimizer step on
        a mask-update iteration). `after_backward` and `after_step` run either way."""
        return True

    def after_step(self, model: nn.Module) -> None:
        """The optimizer has stepped and the state has set masked weights back to zero."""

    def on_step_end(self, step: int, ctx: TrainContext) -> Decision | None:
        """Called after optimizer step number `step` (counted from 1 over the whole run; `after_step` has run).

        Return a Decision to change masks or the plan mid-epoch (RigL every dT steps, JST every few steps); it is
        applied exactly like an `on_epoch_end` decision. A method that returns a plan here calls `ctx.sync()`
        first, so that `ctx.supernet` holds the subnet's current weights."""
        return None

    def on_model_changed(self, model: nn.Module) -> None:
        """The trained module was replaced (a new subnet after a decision, or a restored one on resume): drop
        anything cached from the old module (its layers, parameters, hooks)."""

    def on_epoch_end(self, epoch: int, ctx: TrainContext) -> Decision | None:
        """`epoch` counts from 0; return a Decision to change the network.

        For structured methods the trainer has just absorbed the subnet into `ctx.supernet`: kept channels hold
        their current values, pruned ones their most recently used values."""
        return None

    def train_flops_ratio(self) -> float | None:
        """The fraction of the trained architecture's (dense) training FLOPs the method's sparsity needs, by its
        own cost model (RigL's, for dynamic sparse training); None when it computes densely."""
        return None

    def method_parameters(self) -> dict[str, nn.Parameter]:
        """Trainable tensors the method owns (supermask scores, JST architecture parameters), by name; created in
        `on_train_start` at the latest. Checkpointed with their optimizer's state and restored exactly."""
        return {}

    def make_method_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer | None:
        """The optimizer of `method_parameters()` (None: they are not trained by the state)."""
        return None

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Further tensors needed to resume (e.g. a running score); saved with safetensors, never pickled."""
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what `state_tensors` returned (called after `on_train_start` on resume)."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state needed to resume (never pickled); restored before `on_train_start`."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
