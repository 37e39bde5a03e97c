"""The base of the sparse-training methods (static, SET, RigL, ITOP, channel DST): an initial random mask with
uniform / ER / ERK layer densities (`prunekit.weights.densities`), and, for the dynamic ones, a drop-and-grow
update every `update_every` steps (`prunekit.weights.dst`).

Contract use (DESIGN.md, "The contract"): masks are returned as Decisions and the state keeps masked weights at
zero and zeroes optimizer state where a mask changes, so grown weights start at 0 with zero momentum.
`after_backward` stashes the dense gradient (masked positions included) on an update step; `on_step_end` drops,
grows and returns the new masks; `take_optimizer_step` is False on an update step when `skip_optimizer_step`
(RigL Alg. 1: the mask update replaces the SGD step). Random draws (initial masks, drop noise, random growth)
come from generators seeded by (run seed, step), so every replica of a data-parallel run draws the same masks;
the gradient is the one DDP has already all-reduced (RigL Appendix M: |sum g|, not the mean of |g_i|).

Logged per update (an `update` record in metrics.jsonl, docs/RECORDS.md): overall and per-layer density
(of the trained model's masked tensors), connections changed, drop fraction, R_s (`itop_rate`: the fraction of
maskable weights ever active, ITOP) and the training FLOPs so far relative to dense training of the same steps
(`train_flops_vs_dense`; `prunekit.measure.sparse_flops`: 3 f_S per step, 2 f_S + f_D on a dense-gradient step).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import nn

from prunekit.errors import UserError
from prunekit.measure import count_macs
from prunekit.measure.sparse_flops import layer_macs, sparse_forward_macs, sparse_step_flops
from prunekit.methods.base import Decision, Method, TrainContext
from prunekit.methods.params import PREFIX, param
from prunekit.seeding import derived_seed
from prunekit.weights import dst
from prunekit.weights.densities import (
    layer_sparsities,
    maskable_weights,
    nonzero_counts,
    random_masks,
    sparse_layer_choice,
)

INIT_PURPOSE = 0xD57A
UPDATE_PURPOSE = 0xD57B
_UNSET: Any = object()  # no sparse MACs computed yet


@dataclasses.dataclass
class SparseParams:
    """method.params shared by every sparse-training method: the target sparsity and its layer distribution."""

    sparsity: float = param(0.9, "fraction of the sparse layers' weights that are zero, in [0, 1)")
    distribution: Literal["uniform", "er", "erk"] = param(
        "erk", "layer densities: uniform, er (Erdős–Rényi) or erk (Erdős–Rényi-Kernel), as RigL computes them")
    erk_power_scale: float = param(1.0, "exponent of the ERK ratio (RigL's erk_power_scale; 0 gives uniform)")
    dense_first: bool | None = param(None, "keep the first Conv/Linear layer dense (null: yes for uniform, as in "
                                           "RigL, no for er/erk)")
    dense_last: bool = param(False, "keep the last Conv/Linear layer (the classifier) dense")
    dense_layers: list[str] = param(help="further weight names kept dense (e.g. layer1.0.conv1.weight)",
                                    factory=list)
    layer_density: dict[str, float] = param(help="fixed density per weight name, outside the budget (RigL's "
                                                 "custom_sparsity_map)", factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise UserError(f"{PREFIX}sparsity must lie in [0, 1), got {self.sparsity}")
        if self.erk_power_scale < 0:
            raise UserError(f"{PREFIX}erk_power_scale must be >= 0, got {self.erk_power_scale}")


@dataclasses.dataclass
class DSTParams(SparseParams):
    """method.params of a dynamic sparse method: the drop-and-grow schedule (RigL's defaults)."""

    update_every: int = param(100, "steps between mask updates (dT)")
    drop_fraction: float = param(0.3, "initial fraction of each layer's active weights dropped and regrown (alpha)")
    drop_schedule: Literal["cosine", "constant"] = param(
        "cosine", "decay of the drop fraction: cosine alpha/2 (1 + cos(pi t / T_end)) or constant")
    min_drop_fraction: float = param(0.0, "floor of the cosine decay (ITOP's eta_min 0.005)")
    end_fraction: float = param(0.75, "fraction of the training steps after which the masks stop changing (T_end)")
    growth: Literal["gradient", "random"] = param(
        "gradient", "grow by the largest dense-gradient magnitude (RigL) or uniformly at random (SET)")
    drop: Literal["magnitude", "sign_split"] = param(
        "magnitude", "drop the smallest |w| (RigL), or the smallest positive and largest negative separately (SET)")
    noise_std: float = param(1e-5, "std of the normal noise added to |w| to break ties in the drop (RigL-TF: 1e-5)")
    skip_optimizer_step: bool = param(True, "take no optimizer step on an update iteration (RigL Alg. 1)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.update_every < 1:
            raise UserError(f"{PREFIX}update_every must be >= 1, got {self.update_every}")
        for key in ("drop_fraction", "min_drop_fraction", "end_fraction"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"{PREFIX}{key} must lie in [0, 1], got {value}")
        if self.noise_std < 0:
            raise UserError(f"{PREFIX}noise_std must be >= 0, got {self.noise_std}")


class SparseMethod(Method):
    """Static sparse training: random masks with the chosen layer densities that never change."""

    Params = SparseParams

    def __init__(self, params: SparseParams | None = None) -> None:
        self.params = params or self.Params()
        self.ctx: TrainContext | None = None
        self.ever_active: dict[str, torch.Tensor] = {}
        self.last_step = 0
        self.flops = {"sparse": 0.0, "dense": 0.0}  # training FLOPs per sample, summed over steps
        self._layer_macs: dict[str, int] | None = None
        self._model_macs = 0
        self.dense_names: set[str] = set()
        self._macs_now, self._macs_for = 0.0, _UNSET
        self.dense_macs = 0

    # ------------------------------------------------------------------ the initial masks
    def target_sparsities(self, model: nn.Module) -> dict[str, float]:
        """Per-layer sparsity of every maskable weight of `model` (0 for the dense ones)."""
        p = self.params
        shapes = maskable_weights(model)
        first = p.dense_first if p.dense_first is not None else p.distribution == "uniform"
        dense = sparse_layer_choice(shapes, first, p.dense_last, p.dense_layers)
        return layer_sparsities(shapes, 1.0 - p.sparsity, p.distribution, p.erk_power_scale, dense, p.layer_density)

    def initial_masks(self, model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
        """Random masks with exactly the allocated nonzeros; layers kept dense get all-True masks, so that the
        masks' density is that of all Conv/Linear weights (1 - sparsity) and updates leave them alone."""
        shapes = maskable_weights(model)
        sparsities = self.target_sparsities(model)
        counts = nonzero_counts(shapes, sparsities)
        generator = torch.Generator().manual_seed(derived_seed(seed, INIT_PURPOSE))
        return random_masks(shapes, counts, generator)

    def on_train_start(self, ctx: TrainContext) -> Decision | None:
        self.ctx = ctx
        self.last_step = max(self.last_step, ctx.step)
        full = ctx.supernet if ctx.supernet is not None else ctx.model
        self.dense_names = {n for n, s in self.target_sparsities(full).items() if s == 0}
        self.dense_macs = count_macs(full, ctx.example_inputs)
        if ctx.masks is not None and len(ctx.masks):  # resumed, or started from given masks
            if not self.ever_active:
                self.ever_active = {n: m.cpu().clone() for n, m in ctx.masks.items()}
            return None
        masks = self.initial_masks(ctx.model, ctx.seed)
        self.ever_active = {n: m.clone() for n, m in masks.items()}
        shapes = {n: m.numel() for n, m in masks.items()}
        return Decision(masks=masks, info={"layer_density": {n: int(m.sum()) / shapes[n] for n, m in masks.items()},
                                           "distribution": self.params.distribution, "R_s": self.rate()})

    # ------------------------------------------------------------------ cost bookkeeping
    def on_model_changed(self, model: nn.Module) -> None:
        self._layer_macs, self._macs_for = None, _UNSET

    def _sparse_macs(self) -> float:
        ctx = self.ctx
        assert ctx is not None
        if self._layer_macs is None:
            self._layer_macs = layer_macs(ctx.model, ctx.example_inputs)
            self._model_macs = count_macs(ctx.model, ctx.example_inputs)
            self._macs_for = _UNSET
        masks = ctx.model_masks
        if self._macs_for is not masks:  # the masks changed since the last step
            densities = {n: float(m.float().mean()) for n, m in (masks or {}).items()}
            self._macs_now, self._macs_for = sparse_forward_macs(self._model_macs, self._layer_macs, densities), masks
        return self._macs_now

    def account_step(self, dense_gradient: bool) -> None:
        """Add one step's training FLOPs per sample (sparse, and dense for reference)."""
        self.flops["sparse"] += sparse_step_flops(self._sparse_macs(), self.dense_macs, dense_gradient)
        self.flops["dense"] += sparse_step_flops(self.dense_macs, self.dense_macs, False)

    def train_flops_ratio(self) -> float:
        return self.flops["sparse"] / self.flops["dense"] if self.flops["dense"] else 1.0

    def rate(self) -> float:
        return dst.in_time_rate(self.ever_active)

    def on_step_end(self, step: int, ctx: TrainContext) -> Decision | None:
        self.last_step = step
        self.account_step(dense_gradient=False)
        return None

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "flops": dict(self.flops)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state.get("last_step", 0))
        self.flops = {k: float(v) for k, v in state.get("flops", {"sparse": 0.0, "dense": 0.0}).items()}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"ever_active/{n}": m for n, m in self.ever_active.items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        loaded = {k.removeprefix("ever_active/"): v.bool().clone() for k, v in tensors.items()
                  if k.startswith("ever_active/")}
        if loaded:
            self.ever_active = loaded


class DynamicSparseMethod(SparseMethod):
    """Drop and grow every `update_every` steps until T_end (module docstring)."""

    Params = DSTParams
    params: DSTParams

    def __init__(self, params: DSTParams | None = None) -> None:
        super().__init__(params)
        self._grads: dict[str, torch.Tensor] = {}

    def t_end(self) -> int:
        ctx = self.ctx
        assert ctx is not None
        return int(round(self.params.end_fraction * ctx.steps_per_epoch * ctx.epochs))

    def is_update(self, step: int) -> bool:
        return step % self.params.update_every == 0 and step < self.t_end()

    def after_backward(self, model: nn.Module) -> None:
        step = self.last_step + 1
        if self.params.growth != "gradient" or self.ctx is None or not self.is_update(step):
            return
        masks = self.ctx.model_masks or {}
        params = dict(model.named_parameters())
        self._grads = {name: params[name].grad.detach().clone() for name in masks
                       if name not in self.dense_names and params[name].grad is not None}

    def take_optimizer_step(self, step: int) -> bool:
        return not (self.params.skip_optimizer_step and self.is_update(step))

    def on_step_end(self, step: int, ctx: TrainContext) -> Decision | None:
        self.last_step = step
        update = self.is_update(step)
        self.account_step(dense_gradient=update and self.params.growth == "gradient")
        if not update:
            return None
        masks, info = self.update_masks(step, ctx)
        self._grads = {}
        for name, mask in masks.items():
            self.ever_active[name] = self._ever_active_with(name, mask, ctx)
        merged = {**dict(ctx.model_masks or {}), **masks}
        active, total = sum(int(m.sum()) for m in merged.values()), sum(m.numel() for m in merged.values())
        record = {"kind": "update", "step": step, "epoch": ctx.epoch, "method": self.name,
                  "density": active / total if total else 1.0, "itop_rate": self.rate(),
                  "train_flops_vs_dense": self.train_flops_ratio(), **info}
        ctx.log(record)
        return Decision(masks=masks, info={"changed": info["changed"], "itop_rate": record["itop_rate"]})

    def _ever_active_with(self, name: str, mask: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """ever_active (full width) OR a mask in the trained model's coordinates (overridden by channel DST)."""
        return self.ever_active[name] | mask.cpu()

    def update_masks(self, step: int, ctx: TrainContext) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Drop and grow in every masked layer of `ctx.model`; returns the new masks and what to log."""
        p = self.params
        fraction = dst.drop_fraction(step, p.drop_fraction, self.t_end(), p.drop_schedule, p.min_drop_fraction)
        generator = torch.Generator().manual_seed(derived_seed(ctx.seed, UPDATE_PURPOSE, step))
        params = dict(ctx.model.named_parameters())
        new, changed, density = {}, {}, {}
        for name, mask in (ctx.model_masks or {}).items():
            if name in self.dense_names:
                continue
            mask = mask.cpu()
            weight = params[name]
            if p.drop == "sign_split":
                dropped, k = dst.drop_sign_split(weight, mask, fraction)
            else:
                k = dst.drop_count(int(mask.sum()), fraction)
                dropped = dst.drop_smallest(dst.drop_scores(weight, p.noise_std, generator), mask, k)
            if p.growth == "gradient":
                if name not in self._grads:
                    raise RuntimeError(f"no dense gradient was stashed for {name!r} at step {step}")
                grown = dst.grow_largest(self._grads[name].abs(), dropped, k)
            else:
                grown = dst.grow_random(dropped, k, generator)
            new[name] = grown
            changed[name] = dst.connections_changed(mask, grown)
            density[name] = int(grown.sum()) / grown.numel()
        info = {"drop_fraction": fraction, "changed": sum(changed.values()), "layer_changed": changed,
                "layer_density": density}
        return new, info
