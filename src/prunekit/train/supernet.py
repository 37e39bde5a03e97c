"""SupernetState: the supernet, the channel plan and weight masks in force, and the subnet that trains (DESIGN.md,
central idea).

The Trainer (through `prunekit.train.loop.TrainingLoop`) uses it, and so can a user's own loop:

    state = SupernetState(model, example_inputs, method.channel_policy, method=method,
                          make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9))
    ctx = state.context(steps_per_epoch=len(loader), epochs=epochs)
    state.apply(method.on_train_start(ctx))
    for epoch in range(epochs):
        for x, y in loader:
            loss = loss_fn(state.model(x), y) + method.regularizer(state.model)
            state.optimizer.zero_grad(); loss.backward(); method.after_backward(state.model)
            state.step()                                   # mask gradients, optimizer step, re-zero masked weights
            method.after_step(state.model)
        state.sync()
        state.apply(method.on_epoch_end(epoch, ctx))
    final_model = state.model
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from prunekit.channels import (
    ChannelPlan,
    absorb,
    absorb_optimizer_state,
    channel_groups,
    check_plan_matches,
    kept_indices,
    load_optimizer_state_by_name,
    materialize,
    optimizer_state_by_name,
    require_prunable,
    slice_optimizer_state,
)
from prunekit.channels.optimizer_state import OptimizerState, zero_channel_state_
from prunekit.measure import count_macs, count_params
from prunekit.methods.base import ChannelContext, Decision, Method, TrainContext
from prunekit.weights import WeightMasks, zero_changed_state_
from prunekit.weights.optimizer_state import live_state_by_name


class SupernetState:
    """Owns supernet, groups, plan, weight masks, the training model (subnet) and its optimizer, the method's own
    parameters and their optimizer, and applies decisions.

    `make_optimizer(model)` builds a fresh optimizer for a (sub)net; `prepare(model)` moves a new subnet to the
    right device / memory format. With `policy=None` (unstructured or dense methods) no groups are traced and the
    supernet itself trains. `method`, when given, is told whenever the trained module is replaced
    (`on_model_changed`) and may own trainable parameters (`method_parameters`).
    """

    def __init__(self, supernet: nn.Module, example_inputs: torch.Tensor, policy: str | None,
                 make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
                 prepare: Callable[[nn.Module], nn.Module] = lambda m: m, method: Method | None = None,
                 wrap: Callable[[nn.Module], nn.Module] | None = None) -> None:
        self.supernet = supernet
        # wrap(model) -> the module the forward pass runs through (DistributedDataParallel); methods, masks and the
        # by-name optimizer state always see the unwrapped `model`. Re-applied whenever the model is replaced.
        self.wrap = wrap
        self.example_inputs = example_inputs
        self.make_optimizer = make_optimizer
        self.prepare = prepare
        self.method = method
        self.groups = channel_groups(supernet, example_inputs, policy=policy) if policy is not None else None
        if policy is not None:  # a channel method on a model with nothing it may prune: say why, name the policy
            require_prunable(self.groups, policy, who=method.name if method is not None else "channel pruning")
        self.plan: ChannelPlan | None = None
        self.masks: WeightMasks | None = None  # full width (supernet coordinates)
        self.model_masks: WeightMasks | None = None  # of self.model, on its device
        self.model: nn.Module = supernet
        self.train_module: nn.Module = wrap(supernet) if wrap is not None else supernet
        self.optimizer = make_optimizer(supernet)
        self.method_optimizer: torch.optim.Optimizer | None = None
        self.bank_state: OptimizerState = {}  # the supernet's optimizer state (momentum of pruned channels)
        self.macs = count_macs(supernet, example_inputs)
        self.ctx: TrainContext | None = None

    @property
    def pruned(self) -> bool:
        return self.model is not self.supernet

    def context(self, steps_per_epoch: int, epochs: int, **fields: Any) -> TrainContext:
        """The context a method sees (a ChannelContext when groups exist); kept up to date by `apply`."""
        kind = ChannelContext if self.groups is not None else TrainContext
        self.ctx = kind(model=self.model, optimizer=self.optimizer, steps_per_epoch=steps_per_epoch,
                        epochs=epochs, example_inputs=self.example_inputs, supernet=self.supernet,
                        groups=self.groups, plan=self.plan, masks=self.masks, model_masks=self.model_masks,
                        sync=self.sync, **fields)
        return self.ctx

    # ------------------------------------------------------------------ one training step
    def mask_gradients(self) -> None:
        """Zero the gradients of masked weights (after the method has seen the dense gradient)."""
        if self.model_masks is not None:
            self.model_masks.mask_gradients_(self.model)

    def enforce_masks(self) -> None:
        """Set masked weights back to exactly zero (after every optimizer step)."""
        if self.model_masks is not None:
            self.model_masks.apply_(self.model)

    def step(self) -> None:
        """Mask gradients, step the optimizer (and the method's own, when it trains with the loss), re-zero masked
        weights. The gradients must have been computed (and seen by `after_backward`)."""
        self.mask_gradients()
        self.optimizer.step()
        if self.method_optimizer is not None and self.method is not None and self.method.train_parameters_with_loss:
            self.method_optimizer.step()
        self.enforce_masks()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.method_optimizer is not None:
            self.method_optimizer.zero_grad(set_to_none=True)

    def sync(self) -> None:
        """Write the subnet's weights and buffers back into the supernet (call before `on_epoch_end`)."""
        if self.pruned:
            absorb(self.model, self.supernet, self.plan, self.groups)

    # ------------------------------------------------------------------ decisions
    def apply(self, decision: Decision | None) -> dict[str, Any]:
        """Apply a method's decision; returns what changed (MACs/params before and after, kept counts, density)."""
        if decision is None:
            return {}
        record: dict[str, Any] = {}
        full_masks = None
        if decision.masks is not None:
            full_masks = self._full_masks(decision.masks, in_supernet=decision.plan is not None)
        if decision.plan is not None:
            if self.groups is None:
                raise RuntimeError("a method returned a channel plan but declares no channel_policy")
            record.update(self.apply_plan(decision.plan, decision.reset_channels))
            record["kept"] = {name: len(idx) for name, idx in decision.plan.keep.items()}
        if full_masks is not None:
            record.update(self.set_masks(full_masks))
        return record

    def _full_masks(self, masks: Mapping[str, torch.Tensor], in_supernet: bool) -> WeightMasks:
        """The full-width masks after a decision's `masks` (model or supernet coordinates) are written in."""
        params = dict(self.supernet.named_parameters())
        base = dict(self.masks or {})
        for name in masks:
            if name not in params:
                raise ValueError(f"a weight mask names {name!r}, which is not a parameter of the supernet")
            base.setdefault(name, torch.ones_like(params[name], dtype=torch.bool, device="cpu"))
        current = WeightMasks(base)
        if in_supernet or not self.pruned:
            new = current.updated({k: v.cpu() for k, v in masks.items()})
        else:
            new = current.absorbed({k: v.cpu() for k, v in masks.items()}, self._kept())
        new.check(self.supernet, "a decision's weight masks")
        return new

    def set_masks(self, masks: WeightMasks) -> dict[str, Any]:
        """Put full-width `masks` in force: masked weights become zero, and optimizer state (the subnet's and the
        supernet's bank) is zeroed where a mask turns on or off."""
        old_model_masks = dict(self.model_masks or {})
        old_full = dict(self.masks or {})
        self.masks = masks
        self.model_masks = self._slice_masks(masks)
        changed = zero_changed_state_(live_state_by_name(self.optimizer, self.model), old_model_masks,
                                      self.model_masks)
        zero_changed_state_(self.bank_state, old_full, masks)
        with torch.no_grad():
            if self.pruned:
                masks.apply_(self.supernet)
        self.enforce_masks()
        if self.ctx is not None:
            self.ctx.masks, self.ctx.model_masks = self.masks, self.model_masks
        return {"density": masks.density(), "masked_tensors": len(masks), "mask_changes": changed}

    def _kept(self) -> dict:
        return kept_indices(self.supernet, self.groups, self.plan) if self.pruned else {}

    def _slice_masks(self, masks: WeightMasks | None) -> WeightMasks | None:
        if masks is None:
            return None
        sub = masks.sliced(self._kept()) if self.pruned else masks
        device = next(self.model.parameters()).device
        return WeightMasks({name: mask.to(device) for name, mask in sub.items()})

    def apply_plan(self, plan: ChannelPlan, reset_channels: dict[str, list[int]] | None = None) -> dict[str, Any]:
        """Absorb the subnet's optimizer state into the bank, zero it at `reset_channels`, materialize `plan`, and
        rebuild the optimizer with the sliced state. Weights must already be absorbed (`sync`)."""
        before = {"macs_before": self.macs, "params_before": count_params(self.model)}
        plan.validate(self.groups)
        if plan.keep != (self.plan.keep if self.plan is not None else None):
            # float64, random weights on a copy: the subnet must compute what the masked supernet computes
            check_plan_matches(self.supernet, self.groups, plan, self.example_inputs)
        state = optimizer_state_by_name(self.optimizer, self.model)
        if self.pruned:
            absorb_optimizer_state(state, self.bank_state, self.supernet, self.plan, self.groups)
        else:
            self.bank_state = state
        if reset_channels:
            zero_channel_state_(self.bank_state, self.groups, reset_channels)
        self.plan = plan
        self._set_model(self.prepare(materialize(self.supernet, plan, self.groups)),
                        slice_optimizer_state(self.bank_state, self.supernet, plan, self.groups))
        return {**before, "macs_after": self.macs, "params_after": count_params(self.model)}

    # ------------------------------------------------------------------ the method's own parameters
    def build_method_optimizer(self) -> None:
        """Build the optimizer of the method's own parameters (after `on_train_start` created them)."""
        if self.method is None:
            return
        params = self.method.method_parameters()
        self.method_optimizer = self.method.make_method_optimizer(list(params.values())) if params else None

    def method_optimizer_state(self) -> OptimizerState:
        """The method optimizer's state keyed by the method's parameter names."""
        if self.method_optimizer is None or self.method is None:
            return {}
        names = {id(p): n for n, p in self.method.method_parameters().items()}
        return {names[id(p)]: {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in entry.items()}
                for p, entry in self.method_optimizer.state.items() if id(p) in names}

    def load_method_optimizer_state(self, state: OptimizerState) -> None:
        if self.method_optimizer is None or self.method is None:
            return
        params = self.method.method_parameters()
        for name, entry in state.items():
            if name not in params:
                raise ValueError(f"method optimizer state names {name!r}, which the method does not own")
            param = params[name]
            self.method_optimizer.state[param] = {
                k: v.to(param.device) if torch.is_tensor(v) and v.dim() > 0 else v for k, v in entry.items()}

    # ------------------------------------------------------------------ resume
    def restore(self, plan: ChannelPlan | None, model_tensors: dict[str, torch.Tensor],
                optimizer_state: OptimizerState, bank_state: OptimizerState | None,
                load: Callable[[nn.Module, dict[str, torch.Tensor], str], None],
                masks: WeightMasks | None = None) -> None:
        """Rebuild the state saved in a checkpoint (the supernet's tensors are already loaded)."""
        self.plan = plan
        model = self.prepare(materialize(self.supernet, plan, self.groups)) if plan is not None else self.supernet
        load(model, model_tensors, "checkpoint model")
        self.bank_state = bank_state or {}
        self.masks = masks
        self._set_model(model, optimizer_state)

    def _set_model(self, model: nn.Module, optimizer_state: OptimizerState | None) -> None:
        self.model = model
        self.train_module = self.wrap(model) if self.wrap is not None else model
        self.optimizer = self.make_optimizer(model)
        if optimizer_state:
            load_optimizer_state_by_name(self.optimizer, model, optimizer_state)
        self.model_masks = self._slice_masks(self.masks)
        self.macs = count_macs(model, self.example_inputs)
        if self.ctx is not None:
            self.ctx.model, self.ctx.optimizer, self.ctx.plan = model, self.optimizer, self.plan
            self.ctx.masks, self.ctx.model_masks = self.masks, self.model_masks
        if self.method is not None:
            self.method.on_model_changed(model)
