"""SupernetState: the supernet, the channel plan in force and the subnet that trains (DESIGN.md, central idea).

The Trainer uses it, and so can a user's own loop:

    state = SupernetState(model, example_inputs, method.channel_policy,
                          make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9))
    ctx = state.context(steps_per_epoch=len(loader), epochs=epochs)
    state.apply(method.on_train_start(ctx))
    for epoch in range(epochs):
        for x, y in loader:
            loss = loss_fn(state.model(x), y) + method.regularizer(state.model)
            state.optimizer.zero_grad(); loss.backward(); method.after_backward(state.model)
            state.optimizer.step(); method.after_step(state.model)
        state.sync()
        state.apply(method.on_epoch_end(epoch, ctx))
    final_model = state.model
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prunekit.channels import (
    ChannelPlan,
    absorb,
    absorb_optimizer_state,
    channel_groups,
    load_optimizer_state_by_name,
    materialize,
    optimizer_state_by_name,
    slice_optimizer_state,
)
from prunekit.channels.optimizer_state import OptimizerState
from prunekit.measure import count_macs, count_params
from prunekit.methods.base import Decision, TrainContext


class SupernetState:
    """Owns supernet, groups, plan, the training model (subnet) and its optimizer, and applies decisions.

    `make_optimizer(model)` builds a fresh optimizer for a (sub)net; `prepare(model)` moves a new subnet to the
    right device / memory format. With `policy=None` (unstructured or dense methods) no groups are traced and the
    supernet itself trains.
    """

    def __init__(self, supernet: nn.Module, example_inputs: torch.Tensor, policy: str | None,
                 make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
                 prepare: Callable[[nn.Module], nn.Module] = lambda m: m) -> None:
        self.supernet = supernet
        self.example_inputs = example_inputs
        self.make_optimizer = make_optimizer
        self.prepare = prepare
        self.groups = channel_groups(supernet, example_inputs, policy=policy) if policy is not None else None
        self.plan: ChannelPlan | None = None
        self.model: nn.Module = supernet
        self.optimizer = make_optimizer(supernet)
        self.bank_state: OptimizerState = {}  # the supernet's optimizer state (momentum of pruned channels)
        self.macs = count_macs(supernet, example_inputs)
        self.ctx: TrainContext | None = None

    @property
    def pruned(self) -> bool:
        return self.model is not self.supernet

    def context(self, steps_per_epoch: int, epochs: int, **fields: Any) -> TrainContext:
        """The TrainContext a method sees; kept up to date by `apply`."""
        self.ctx = TrainContext(model=self.model, optimizer=self.optimizer, steps_per_epoch=steps_per_epoch,
                                epochs=epochs, example_inputs=self.example_inputs, supernet=self.supernet,
                                groups=self.groups, plan=self.plan, **fields)
        return self.ctx

    def sync(self) -> None:
        """Write the subnet's weights and buffers back into the supernet (call before `on_epoch_end`)."""
        if self.pruned:
            absorb(self.model, self.supernet, self.plan, self.groups)

    def apply(self, decision: Decision | None) -> dict[str, Any]:
        """Apply a method's decision; returns what changed (MACs/params before and after, kept counts)."""
        if decision is None:
            return {}
        record: dict[str, Any] = {}
        if decision.plan is not None:
            if self.groups is None:
                raise RuntimeError("a method returned a channel plan but declares no channel_policy")
            record.update(self.apply_plan(decision.plan))
            record["kept"] = {name: len(idx) for name, idx in decision.plan.keep.items()}
        if decision.masks is not None:
            # Applied once here; the method that owns the masks re-applies them in after_step.
            params = dict(self.model.named_parameters())
            with torch.no_grad():
                for name, mask in decision.masks.items():
                    params[name].mul_(mask.to(params[name].device, params[name].dtype))
            record["masked_tensors"] = len(decision.masks)
        return record

    def apply_plan(self, plan: ChannelPlan) -> dict[str, Any]:
        """Absorb the subnet's optimizer state into the bank, materialize `plan`, and rebuild the optimizer with
        the sliced state. Weights must already be absorbed (`sync`)."""
        before = {"macs_before": self.macs, "params_before": count_params(self.model)}
        plan.validate(self.groups)
        state = optimizer_state_by_name(self.optimizer, self.model)
        if self.pruned:
            absorb_optimizer_state(state, self.bank_state, self.supernet, self.plan, self.groups)
        else:
            self.bank_state = state
        self.plan = plan
        self._set_model(self.prepare(materialize(self.supernet, plan, self.groups)),
                        slice_optimizer_state(self.bank_state, self.supernet, plan, self.groups))
        return {**before, "macs_after": self.macs, "params_after": count_params(self.model)}

    def restore(self, plan: ChannelPlan | None, model_tensors: dict[str, torch.Tensor],
                optimizer_state: OptimizerState, bank_state: OptimizerState | None,
                load: Callable[[nn.Module, dict[str, torch.Tensor], str], None]) -> None:
        """Rebuild the state saved in a checkpoint (the supernet's tensors are already loaded)."""
        self.plan = plan
        model = self.prepare(materialize(self.supernet, plan, self.groups)) if plan is not None else self.supernet
        load(model, model_tensors, "checkpoint model")
        self.bank_state = bank_state or {}
        self._set_model(model, optimizer_state)

    def _set_model(self, model: nn.Module, optimizer_state: OptimizerState | None) -> None:
        self.model = model
        self.optimizer = self.make_optimizer(model)
        if optimizer_state:
            load_optimizer_state_by_name(self.optimizer, model, optimizer_state)
        self.macs = count_macs(model, self.example_inputs)
        if self.ctx is not None:
            self.ctx.model, self.ctx.optimizer, self.ctx.plan = model, self.optimizer, self.plan
