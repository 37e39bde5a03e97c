"""The learned supermask (Zhou, Lan, Liu & Yosinski, NeurIPS 2019, Sec. 5; their `masked_networks.py`): the
weights stay at their initial values and one real score s per weight is trained. The forward pass uses W * m
with m ~ Bernoulli(sigmoid(s)), and the straight-through estimator m + sigmoid(s) - stop_grad(sigmoid(s)) carries
the gradient to s.

How it is wired (the method never edits modules' parameters): a forward hook on every masked Conv/Linear layer
recomputes the layer's output with the effective weight (the layer's own output is discarded, so the weights and
biases of those layers get no gradient and stay frozen). Other parameters (BatchNorm) still train with the run's
optimizer: set `optim.lr: 0` to freeze them too (the presets do). At evaluation the mask is the deterministic
sigmoid(s) > 0.5 (Zhou et al. sample at test time too; a fixed mask makes evaluation reproducible). After the last
epoch that mask becomes the run's weight mask (Decision.masks), so RUN/model holds the masked initial weights
and masks.safetensors the supermask. With `weights: signed_constant` the effective weights are
sign(W) * std(W) per layer; the saved model then holds the masked *initial* weights (documented limitation: load it
with the same transform to reproduce the accuracy).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.methods import METHODS
from prunekit.methods.base import Decision, Method, TrainContext
from prunekit.methods.params import param
from prunekit.weights.magnitude import prunable_weights


@dataclasses.dataclass
class SupermaskParams:
    score_init: float = param(0.0, "initial score of every weight (sigmoid(0) = 0.5: each kept with p 0.5)")
    score_lr: float = param(100.0, "SGD learning rate of the scores (Zhou et al. train them at 100)")
    score_momentum: float = param(0.9, "SGD momentum of the scores")
    weights: Literal["init", "signed_constant"] = param("init", "effective weights: the initial values, or "
                                                                "sign(W_init) * std of the layer's W_init")
    exclude: list[str] = param(help="layers (fnmatch patterns of parameter or module names) left unmasked and "
                                    "trainable", factory=list)

    def __post_init__(self) -> None:
        from prunekit.errors import UserError

        if self.score_lr <= 0:
            raise UserError(f"method.params.score_lr must be positive, got {self.score_lr}")
        if self.weights not in ("init", "signed_constant"):
            raise UserError(f"method.params.weights must be 'init' or 'signed_constant', got {self.weights!r}")


def straight_through_mask(scores: torch.Tensor, training: bool) -> torch.Tensor:
    """Bernoulli(sigmoid(s)) with the straight-through gradient (training), sigmoid(s) > 0.5 (evaluation)."""
    prob = torch.sigmoid(scores)
    if not training:
        return (prob > 0.5).to(scores.dtype)
    sample = torch.bernoulli(prob.detach())
    return sample + prob - prob.detach()


@METHODS.register("supermask")
class LearnedSupermask(Method):
    """Weights frozen at init, scores trained with a Bernoulli sample and a straight-through estimator."""

    name = "supermask"
    summary = "learned supermask: weights frozen at init, one score per weight trained (Bernoulli + STE)"
    paper = "Zhou, Lan, Liu & Yosinski, Deconstructing Lottery Tickets, NeurIPS 2019 (Sec. 5)"
    Params = SupermaskParams

    def __init__(self, params: SupermaskParams | None = None) -> None:
        self.params = params or SupermaskParams()
        self.scores: dict[str, nn.Parameter] = {}
        self.constants: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []
        self._epochs = 0

    # ------------------------------------------------------------------ set-up
    def on_train_start(self, ctx: TrainContext) -> Decision | None:
        self._epochs = ctx.epochs
        weights = prunable_weights(ctx.model, self.params.exclude)
        if not self.scores:
            self.scores = {name: nn.Parameter(torch.full_like(w, self.params.score_init, dtype=torch.float32))
                           for name, w in weights.items()}
        if self.params.weights == "signed_constant":
            self.constants = {name: w.detach().float().std(unbiased=False) for name, w in weights.items()}
        self._attach(ctx.model)
        return None

    def on_model_changed(self, model: nn.Module) -> None:
        if self.scores:
            self._attach(model)

    def _attach(self, model: nn.Module) -> None:
        for handle in self._handles:
            handle.remove()
        modules = dict(model.named_modules())
        self._handles = [modules[name.rpartition(".")[0]].register_forward_hook(self._hook(name))
                         for name in self.scores]

    def _hook(self, name: str):  # type: ignore[no-untyped-def]
        def forward(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            weight = module.weight.detach()
            if name in self.constants:
                weight = torch.sign(weight) * self.constants[name].to(weight.device, weight.dtype)
            mask = straight_through_mask(self.scores[name].to(weight.device), module.training).to(weight.dtype)
            bias = module.bias.detach() if module.bias is not None else None
            if isinstance(module, nn.Linear):
                return F.linear(inputs[0], weight * mask, bias)
            return module._conv_forward(inputs[0], weight * mask, bias)  # noqa: SLF001 (Conv1d/2d/3d)

        return forward

    # ------------------------------------------------------------------ the scores
    def method_parameters(self) -> dict[str, nn.Parameter]:
        return dict(self.scores)

    def make_method_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer | None:
        return torch.optim.SGD(params, lr=self.params.score_lr, momentum=self.params.score_momentum)

    def final_masks(self) -> dict[str, torch.Tensor]:
        return {name: (torch.sigmoid(s.detach()) > 0.5).cpu() for name, s in self.scores.items()}

    def on_epoch_end(self, epoch: int, ctx: TrainContext) -> Decision | None:
        """After the last epoch, the thresholded supermask becomes the run's weight mask."""
        if epoch + 1 < self._epochs:
            return None
        masks = self.final_masks()
        kept = sum(int(m.sum()) for m in masks.values())
        total = sum(m.numel() for m in masks.values())
        return Decision(masks=masks, info={"supermask_density": kept / max(1, total)})
