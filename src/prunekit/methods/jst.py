"""Joint Search-and-Training (Lu et al., IJCAI 2020, "Beyond Network Pruning: a Joint Search-and-Training
Approach"; ../shared/seeds/003_joint_search_and_training.md), on prunekit's supernet.

One run of `train.epochs` epochs, in three phases counted in optimizer steps:

1. coarse training (`coarse_epochs`): the full network with one architecture parameter alpha per filter of every
   prunable group, each channel's output multiplied by C_l * softmax(alpha^l) (Eq. 6, `jst_parts.alpha_factor`),
   weights and alphas trained together with cross-entropy + lambda ||alpha||_2 (Eq. 1);
2. the search (Alg. 2): `samples` times, ThresNet (Eq. 2) picks one threshold per layer, Alg. 1 keeps each
   layer's filters with the largest perturbed shares until their cumulative share reaches it, and that
   sub-network is materialised physically (a channel plan); its weights train on the training split for
   `sample_epochs` (Eq. 8), then its alphas on the validation split for `val_epochs` passes (Eq. 9); its reward
   R = -(validation loss + gamma * size) (Eq. 3) trains ThresNet by REINFORCE (Eq. 4). Weights, BN statistics
   and optimizer state go back into the supernet when the next plan is applied (SupernetState); the alphas are
   full-width parameters, so the kept filters' updates are already in place;
3. fine-tuning, for the remaining epochs, of the sample with the highest reward (with `target_macs_ratio`: its
   thresholds scaled by one common factor until the plan meets the MACs target), with the alpha factors folded
   into the network's BatchNorms so that the saved model needs no hooks.

    method:
      name: jst
      params: {coarse_epochs: 100, samples: 30, sample_epochs: 1, val_epochs: 1, target_macs_ratio: 0.5}

Needs a validation split: `data.val_fraction > 0` (or a dataset with its own).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from prunekit.channels import ChannelGroup, ChannelPlan
from prunekit.channels.widths import check_round_to
from prunekit.errors import UserError
from prunekit.methods import METHODS
from prunekit.methods.base import Decision, Method, TrainContext
from prunekit.methods.budget import REACHED, MacsBudget, PlanMacs
from prunekit.methods.jst_parts import (
    ThresNet,
    alpha_factor,
    cumulative_keep,
    fold_factor_,
    gumbel_noise,
    log_prob,
    perturbed_shares,
    reinforce_loss,
    reward,
    sample_actions,
)
from prunekit.methods.params import MIN_CHANNELS_HELP, POLICY_HELP, TARGET_MACS_HELP, ChannelParams, param
from prunekit.methods.widths import ROUND_TO_HELP, PlanRounding
from prunekit.seeding import derived_seed

SAMPLE_PURPOSE = 0x157
INIT_PURPOSE = 0xA1FA
SEARCH_RECORD = "jst_sample"


@dataclasses.dataclass
class JSTParams(ChannelParams):
    """method.params of `jst`. The note gives coarse training 100 epochs and T = 30 samples for CIFAR (M = 10,
    N = 2 for ImageNet only); lambda, the noise scale, the threshold choices, the learning rates and gamma are not
    given there (the defaults of the last three follow the authors' TPAMI code where it has them)."""

    amount_key: ClassVar[str | None] = None

    coarse_epochs: int = param(100, "epochs of coarse training of the full network's weights and alphas (Eq. 1)")
    samples: int = param(30, "T: sub-networks sampled and trained in the search (Alg. 2)")
    sample_epochs: float = param(1.0, "M: epochs of weight training per sampled sub-network (Eq. 8); fractions "
                                      "allowed (rounded to whole steps, at least one)")
    val_epochs: int = param(1, "N: passes over the validation split training the sub-network's alphas (Eq. 9)")
    alpha_lambda: float = param(5e-4, "lambda of Eq. 1: weight of ||alpha||_2 in the coarse-training loss")
    alpha_lr: float = param(0.01, "Adam learning rate of the alphas (coarse training and Eq. 9)")
    alpha_init: Literal["kaiming", "uniform"] = param(
        "kaiming", 'alpha initialisation: "kaiming" (normal, std sqrt(2 / C_l), the note) or "uniform" U(0, 1) '
                   "(the authors' TPAMI code)")
    noise_scale: float = param(0.05, "scale of the Gumbel perturbation of alpha in Alg. 1 (TPAMI code: 0.05)")
    thresholds: list[float] = param(help="the thresholds th^l ThresNet chooses from, in (0, 1]",
                                    factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    policy_lr: float = param(0.01, "Adam learning rate of ThresNet (REINFORCE, Eq. 4)")
    policy_hidden: int = param(128, "width every layer's alpha vector is projected to in ThresNet")
    policy_batch: int = param(1, "K of Eq. 4: sampled sub-networks per ThresNet update")
    baseline_decay: float = param(0.9, "decay of the running-mean reward baseline subtracted in Eq. 4")
    gamma: float = param(2.0, "gamma of Eq. 3: weight of the size term (MACs ratio, or with target_macs_ratio "
                              "its distance to the target) in the reward (TPAMI code: 2)")
    target_macs_ratio: float | None = param(None, f"{TARGET_MACS_HELP}: the final sub-network's thresholds are "
                                                  "scaled by one common factor until it meets it")
    policy: Literal["internal", "all"] = param("internal", POLICY_HELP)
    min_channels: int = param(1, MIN_CHANNELS_HELP)
    round_to: int | Literal["hardware"] = param(1, f"{ROUND_TO_HELP}. Applied to every sampled sub-network and "
                                                   "to the final one; channels added or dropped are ranked by "
                                                   "their perturbed alpha share")

    def __post_init__(self) -> None:
        self.check_channel_params()
        p = "method.params."
        check_round_to(self.round_to, f"{p}round_to")
        if self.coarse_epochs < 1:
            raise UserError(f"{p}coarse_epochs must be >= 1, got {self.coarse_epochs}")
        if self.samples < 1 or self.val_epochs < 1 or self.policy_batch < 1 or self.policy_hidden < 1:
            raise UserError(f"{p}samples, val_epochs, policy_batch and policy_hidden must be >= 1")
        if not self.sample_epochs > 0:
            raise UserError(f"{p}sample_epochs must be > 0, got {self.sample_epochs}")
        if not self.thresholds or any(not 0.0 < t <= 1.0 for t in self.thresholds):
            raise UserError(f"{p}thresholds must be a non-empty list of values in (0, 1], got {self.thresholds}")
        for key in ("alpha_lambda", "alpha_lr", "noise_scale", "policy_lr", "gamma"):
            if not getattr(self, key) >= 0 or math.isinf(getattr(self, key)):
                raise UserError(f"{p}{key} must be a finite number >= 0, got {getattr(self, key)}")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise UserError(f"{p}baseline_decay must lie in [0, 1), got {self.baseline_decay}")
        if self.target_macs_ratio is not None and not 0.0 < self.target_macs_ratio <= 1.0:
            raise UserError(f"{p}target_macs_ratio must lie in (0, 1], got {self.target_macs_ratio}")


@dataclasses.dataclass(frozen=True)
class Layer:
    """One prunable group JST searches, and the module whose output its alphas scale (the group's affine BN, or
    its conv/linear producer when it has none)."""

    group: ChannelGroup
    module: str


def searchable_layer(supernet: nn.Module, group: ChannelGroup) -> Layer | None:
    """The layer of `group` whose output channels are exactly the group's channels (identity positions), or None."""
    candidates = [group.bn] if group.bn is not None else list(group.producers[:1])
    for name in candidates:
        if name is None:
            continue
        module = supernet.get_submodule(name)
        if isinstance(module, _BatchNorm) and module.weight is None:
            continue
        for piece in group.slices:
            if (piece.module == name and piece.tensor == "weight" and piece.dim == 0
                    and piece.positions == piece.channels == tuple(range(group.size))):
                return Layer(group, name)
    return None


@METHODS.register("jst")
class JointSearchTraining(Method):
    """Joint Search-and-Training (module docstring): coarse training, T sampled sub-networks, fine-tuning."""

    name = "jst"
    summary = ("search and train sub-networks of the full network: per-filter alphas, perturbed cumulative-threshold "
               "sampling with ThresNet thresholds (REINFORCE), then fine-tune the best")
    paper = ("Lu et al., Beyond Network Pruning: a Joint Search-and-Training Approach, IJCAI 2020")
    Params = JSTParams
    channel_policy: str | None = "internal"

    def __init__(self, params: JSTParams | None = None) -> None:
        self.params = params or JSTParams()
        self.channel_policy = self.params.policy
        self.layers: list[Layer] = []
        self.alphas: dict[str, nn.Parameter] = {}
        self.thresnet: ThresNet | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.macs: PlanMacs | None = None
        self.ctx: TrainContext | None = None
        self.handles: list[Any] = []
        self.coarse_steps = self.sample_steps = self.search_end = 0
        # resumable state (state_dict / state_tensors)
        self.steps_done = 0  # optimizer steps taken (ctx.step is not set on resume until the first step)
        self.folded = False
        self.history: list[dict[str, Any]] = []  # one summary per finished sample
        self.current: dict[str, Any] | None = None  # the sample being trained: index, actions, thresholds, plan
        self.current_tensors: dict[str, torch.Tensor] = {}  # its ThresNet inputs and perturbed shares
        self.pending: list[dict[str, Any]] = []  # finished episodes not yet used for a ThresNet update
        self.pending_tensors: dict[str, torch.Tensor] = {}
        self.best: dict[str, Any] | None = None
        self.best_tensors: dict[str, torch.Tensor] = {}
        self.baseline: float | None = None
        self.rounding = PlanRounding(self.params.round_to, self.params.min_channels)

    # ------------------------------------------------------------------ set-up
    def on_train_start(self, ctx: TrainContext) -> Decision | None:
        if ctx.supernet is None or ctx.groups is None:
            raise RuntimeError("jst needs ctx.supernet and ctx.groups (set by prunekit's Trainer)")
        if ctx.val_batches is None:
            raise UserError("jst trains its architecture parameters on a validation split (Eq. 9): set "
                            "data.val_fraction > 0")
        p = self.params
        self.ctx = ctx
        self.coarse_steps = p.coarse_epochs * ctx.steps_per_epoch
        self.sample_steps = max(1, round(p.sample_epochs * ctx.steps_per_epoch))
        self.search_end = self.coarse_steps + p.samples * self.sample_steps
        if self.search_end > ctx.steps_per_epoch * ctx.epochs:
            raise UserError(f"jst: coarse_epochs + samples * sample_epochs = {self.search_end} steps exceed the "
                            f"run's {ctx.steps_per_epoch * ctx.epochs} (train.epochs = {ctx.epochs})")
        self.layers = [layer for g in ctx.groups if (layer := searchable_layer(ctx.supernet, g)) is not None]
        if not self.layers:
            raise UserError("jst: no prunable channel group has a layer whose output its alphas could scale")
        self.macs = PlanMacs(ctx.supernet, [layer.group for layer in self.layers], ctx.example_inputs)
        self.rounding.prepare(ctx, [layer.group for layer in self.layers], self.macs)
        self._create_parameters(ctx)
        self._install_hooks(ctx.model)
        return None

    def _create_parameters(self, ctx: TrainContext) -> None:
        """Alphas (on the model's device) and ThresNet (CPU), seeded; a resumed run overwrites their values."""
        generator = torch.Generator().manual_seed(derived_seed(ctx.seed, INIT_PURPOSE))
        device = next(ctx.supernet.parameters()).device
        self.alphas = {}
        for layer in self.layers:
            n = layer.group.size
            if self.params.alpha_init == "uniform":
                value = torch.rand(n, generator=generator)
            else:
                value = torch.randn(n, generator=generator) * math.sqrt(2.0 / n)
            self.alphas[layer.group.name] = nn.Parameter(value.to(device))
        self.thresnet = ThresNet([layer.group.size for layer in self.layers], len(self.params.thresholds),
                                 self.params.policy_hidden)
        with torch.no_grad():
            for module in self.thresnet.modules():
                if isinstance(module, nn.Linear):
                    bound = 1.0 / math.sqrt(module.in_features)
                    module.weight.copy_(torch.rand(module.weight.shape, generator=generator) * 2 * bound - bound)
                    module.bias.copy_(torch.rand(module.bias.shape, generator=generator) * 2 * bound - bound)

    def method_parameters(self) -> dict[str, nn.Parameter]:
        params = {f"alpha/{name}": a for name, a in self.alphas.items()}
        if self.thresnet is not None:
            params.update({f"thresnet/{n}": q for n, q in self.thresnet.named_parameters()})
        return params

    def make_method_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer | None:
        """One Adam with two groups: alphas (alpha_lr) and ThresNet (policy_lr). Each update computes only its
        group's gradients, so Adam leaves the other group alone."""
        alpha_ids = {id(a) for a in self.alphas.values()}
        groups = [{"params": [q for q in params if id(q) in alpha_ids], "lr": self.params.alpha_lr},
                  {"params": [q for q in params if id(q) not in alpha_ids], "lr": self.params.policy_lr}]
        self.optimizer = torch.optim.Adam([g for g in groups if g["params"]])
        return self.optimizer

    @property
    def train_parameters_with_loss(self) -> bool:  # type: ignore[override]
        """Alphas train with the training loss only during coarse training (Eq. 1); in the search, on
        validation batches (Eq. 9)."""
        return self.steps_done < self.coarse_steps

    def regularizer(self, model: nn.Module) -> torch.Tensor | float:
        """lambda ||alpha||_2 of Eq. 1, during coarse training."""
        if not self.train_parameters_with_loss or not self.params.alpha_lambda:
            return 0.0
        return self.params.alpha_lambda * torch.cat(list(self.alphas.values())).norm()

    # ------------------------------------------------------------------ the alpha factors (Eq. 6)
    def on_model_changed(self, model: nn.Module) -> None:
        self._install_hooks(model)

    def _install_hooks(self, model: nn.Module) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []
        if self.folded or not self.alphas or self.ctx is None:
            return
        plan = self.ctx.plan or ChannelPlan()
        for layer in self.layers:
            module = model.get_submodule(layer.module)
            alpha = self.alphas[layer.group.name]
            index = torch.as_tensor(plan.kept(layer.group), device=alpha.device)
            self.handles.append(module.register_forward_hook(_scale_hook(alpha, index, module)))

    # ------------------------------------------------------------------ the schedule
    def on_step_end(self, step: int, ctx: TrainContext) -> Decision | None:
        """Sample boundaries within an epoch (sample_epochs not whole); those at an epoch's end wait for
        on_epoch_end, so that the epoch's evaluation sees the sub-network that trained in it."""
        self.steps_done = step
        if step % ctx.steps_per_epoch == 0:
            return None
        return self._boundary(step, ctx)

    def on_epoch_end(self, epoch: int, ctx: TrainContext) -> Decision | None:
        return self._boundary((epoch + 1) * ctx.steps_per_epoch, ctx)

    def _boundary(self, step: int, ctx: TrainContext) -> Decision | None:
        """At the end of sample k's steps: finish it, then start sample k + 1 or the fine-tuning."""
        if step < self.coarse_steps or step > self.search_end or (step - self.coarse_steps) % self.sample_steps:
            return None
        done = (step - self.coarse_steps) // self.sample_steps  # samples finished at this step
        if done >= 1:
            self._end_sample(done - 1, ctx)
        ctx.sync()
        if done < self.params.samples:
            return self._start_sample(done, ctx)
        return self._final(ctx)

    def _start_sample(self, index: int, ctx: TrainContext) -> Decision:
        """Alg. 1 for every layer, with ThresNet's thresholds: the plan of sample `index`."""
        assert self.thresnet is not None and self.macs is not None
        p = self.params
        generator = torch.Generator().manual_seed(derived_seed(ctx.seed, SAMPLE_PURPOSE, index))
        inputs = [ThresNet.features(self.alphas[layer.group.name].cpu()) for layer in self.layers]
        with torch.no_grad():
            actions = sample_actions(self.thresnet(inputs), generator)
        thresholds = [p.thresholds[a] for a in actions]
        keep: dict[str, list[int]] = {}
        tensors: dict[str, torch.Tensor] = {}
        scores: dict[str, torch.Tensor] = {}
        for i, (layer, th) in enumerate(zip(self.layers, thresholds, strict=True)):
            noise = gumbel_noise(layer.group.size, generator)
            shares = perturbed_shares(self.alphas[layer.group.name], noise, p.noise_scale)
            keep[layer.group.name] = cumulative_keep(shares, th, p.min_channels)
            tensors[f"input/{i}"], tensors[f"shares/{i}"] = inputs[i], shares
            scores[layer.group.name] = shares
        plan, rounding_info = self.rounding.apply(ChannelPlan(keep), [layer.group for layer in self.layers], scores)
        ratio = self._macs_ratio(plan)
        self.current = {"index": index, "actions": actions, "thresholds": thresholds, "plan": plan.to_json(),
                        "macs_ratio": ratio}
        self.current_tensors = tensors
        return Decision(plan=plan, info={"jst_phase": "search", "sample": index, "thresholds": thresholds,
                                         "planned_macs_ratio": ratio, **rounding_info})

    def _end_sample(self, index: int, ctx: TrainContext) -> None:
        """Eq. 9 on the validation split, the reward (Eq. 3), the best so far, and a ThresNet update (Eq. 4)."""
        assert self.current is not None and self.current["index"] == index
        self._train_alphas_on_validation(ctx)
        val_loss, val_accuracy = _evaluate(ctx.model, ctx.val_batches)
        size = self._size_term(self.current["macs_ratio"])
        r = reward(val_loss, size, self.params.gamma)
        summary = {"sample": index, "reward": r, "val_loss": val_loss, "val_accuracy": val_accuracy,
                   "macs_ratio": self.current["macs_ratio"], "thresholds": self.current["thresholds"]}
        self.history.append(summary)
        if self.best is None or r > self.best["reward"]:
            self.best = {**summary, "plan": self.current["plan"]}
            self.best_tensors = {k: v for k, v in self.current_tensors.items() if k.startswith("shares/")}
        slot = len(self.pending)
        self.pending.append({"actions": self.current["actions"], "reward": r})
        self.pending_tensors.update({f"{slot}/{k}": v for k, v in self.current_tensors.items()
                                     if k.startswith("input/")})
        updated = self._update_thresnet() if len(self.pending) >= self.params.policy_batch else None
        ctx.log({"kind": SEARCH_RECORD, "step": ctx.step, "epoch": ctx.epoch, **summary,
                 "kept": {name: len(ix) for name, ix in self.current["plan"]["keep"].items()},
                 "baseline": self.baseline, "policy_loss": updated})
        self.current, self.current_tensors = None, {}

    def _train_alphas_on_validation(self, ctx: TrainContext) -> None:
        """`val_epochs` passes of Adam on the sub-network's alphas with the validation loss (Eq. 9). The model
        runs in training mode (batch statistics, as when its weights train), and its BN running statistics are
        put back afterwards: this phase changes the alphas only."""
        assert self.optimizer is not None and ctx.val_batches is not None
        model = ctx.model
        buffers = {name: b.clone() for name, b in model.named_buffers()}
        alphas = list(self.alphas.values())
        was_training = model.training
        model.train()
        for _ in range(self.params.val_epochs):
            for images, labels in ctx.val_batches():
                loss = F.cross_entropy(model(images).float(), labels)
                grads = torch.autograd.grad(loss, alphas, allow_unused=True)
                self.optimizer.zero_grad(set_to_none=True)
                for alpha, grad in zip(alphas, grads, strict=True):
                    alpha.grad = grad
                self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
        model.train(was_training)

    def _update_thresnet(self) -> float:
        """One REINFORCE step on the pending episodes (Eq. 4, baseline = running mean reward)."""
        assert self.thresnet is not None and self.optimizer is not None
        rewards = [e["reward"] for e in self.pending]
        baseline = self.baseline if self.baseline is not None else sum(rewards) / len(rewards)
        log_probs = []
        for slot, episode in enumerate(self.pending):
            inputs = [self.pending_tensors[f"{slot}/input/{i}"] for i in range(len(self.layers))]
            log_probs.append(log_prob(self.thresnet(inputs), episode["actions"]))
        loss = reinforce_loss(log_probs, rewards, baseline)
        params = list(self.thresnet.parameters())
        grads = torch.autograd.grad(loss, params)
        self.optimizer.zero_grad(set_to_none=True)
        for q, g in zip(params, grads, strict=True):
            q.grad = g
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        d = self.params.baseline_decay
        self.baseline = d * baseline + (1 - d) * sum(rewards) / len(rewards)
        self.pending, self.pending_tensors = [], {}
        return float(loss.detach())

    def _final(self, ctx: TrainContext) -> Decision:
        """The best sample, fitted to the MACs target, with the alpha factors folded into the network."""
        assert self.best is not None and ctx.supernet is not None
        plan = ChannelPlan.from_json(self.best["plan"])
        info: dict[str, Any] = {"jst_phase": "finetune", "best_sample": self.best["sample"],
                                "best_reward": self.best["reward"], "best_val_accuracy": self.best["val_accuracy"]}
        if self.params.target_macs_ratio is not None:
            plan, scale, fit_info = self._fit_to_target(self.best["thresholds"])
            info.update({"threshold_scale": scale, **fit_info})
        for layer in self.layers:
            index = torch.as_tensor(plan.kept(layer.group))
            alpha = self.alphas[layer.group.name]
            factor = alpha_factor(alpha.detach(), index.to(alpha.device))
            fold_factor_(ctx.supernet.get_submodule(layer.module), index.to(factor.device), factor)
        self.folded = True
        self._install_hooks(ctx.model)  # removes them: the folded supernet computes the factors itself
        info["planned_macs_ratio"] = self._macs_ratio(plan)
        return Decision(plan=plan, info=info)

    def _fit_to_target(self, thresholds: list[float]) -> tuple[ChannelPlan, float, dict[str, Any]]:
        """Scale the best sample's thresholds by t in [-1, 1] (t > 0: th + t (1 - th), toward keeping all;
        t < 0: th (1 + t), toward keeping min_channels) on its own perturbed shares; the largest plan meeting the
        target (a bisection over a grid of 4001 t values, MACs non-increasing as t falls)."""
        assert self.macs is not None and self.params.target_macs_ratio is not None
        shares = [self.best_tensors[f"shares/{i}"] for i in range(len(self.layers))]
        grid = [1 - k / 2000 for k in range(4001)]

        def plan_at(t: float) -> ChannelPlan:
            scaled = [th + t * (1 - th) if t >= 0 else th * (1 + t) for th in thresholds]
            return ChannelPlan({layer.group.name: cumulative_keep(s, th, self.params.min_channels)
                                for layer, s, th in zip(self.layers, shares, scaled, strict=True)})

        groups = [layer.group for layer in self.layers]
        scores = {layer.group.name: s for layer, s in zip(self.layers, shares, strict=True)}
        budget = MacsBudget(self.params.target_macs_ratio, self.macs.dense())
        choice = budget.search(grid, lambda t: self.macs.estimate(self.rounding.priced(plan_at(t), groups, scores)))
        plan, rounding_info = self.rounding.apply(plan_at(choice.value), groups, scores)
        reached = self.macs.estimate(plan) <= budget.target
        return plan, choice.value, {REACHED: reached, "target_macs_ratio": self.params.target_macs_ratio,
                                    **rounding_info}

    # ------------------------------------------------------------------ sizes
    def _macs_ratio(self, plan: ChannelPlan) -> float:
        assert self.macs is not None
        return self.macs.estimate(plan) / max(1, self.macs.dense())

    def _size_term(self, ratio: float) -> float:
        """size(S) of Eq. 3: the MACs ratio, or with a target its distance to the target."""
        target = self.params.target_macs_ratio
        return ratio if target is None else abs(ratio - target)

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        return {"steps_done": self.steps_done, "folded": self.folded, "history": self.history,
                "current": self.current, "pending": self.pending, "best": self.best, "baseline": self.baseline,
                **self.rounding.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rounding.load_state_dict(state)
        self.steps_done = int(state.get("steps_done", 0))
        self.folded = bool(state.get("folded", False))
        self.history = list(state.get("history", []))
        self.current = state.get("current")
        self.pending = list(state.get("pending", []))
        self.best = state.get("best")
        self.baseline = state.get("baseline")

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"current/{k}": v for k, v in self.current_tensors.items()}
        out.update({f"pending/{k}": v for k, v in self.pending_tensors.items()})
        out.update({f"best/{k}": v for k, v in self.best_tensors.items()})
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v.clone() for k, v in tensors.items() if k.startswith(prefix)}

        self.current_tensors = part("current/")
        self.pending_tensors = part("pending/")
        self.best_tensors = part("best/")


def _scale_hook(alpha: nn.Parameter, index: torch.Tensor, target: nn.Module) -> Any:
    """A forward hook multiplying output channel i of `target` by alpha_factor(alpha, index)[i].

    Copies of a hooked module (materialize copies the supernet, hooks included, while it trains during coarse
    training) carry the hook along; it acts only on `target` itself, so a copy passes its output through."""

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if module is not target:
            return None
        factor = alpha_factor(alpha, index).to(output.dtype)
        return output * factor.view(1, -1, *([1] * (output.dim() - 2)))

    return hook


@torch.no_grad()
def _evaluate(model: nn.Module, batches: Any) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` in eval mode over `batches()`."""
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for images, labels in batches():
        logits = model(images).float()
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(1) == labels).sum())
        count += labels.numel()
    model.train(was_training)
    return loss_sum / max(1, count), correct / max(1, count)


__all__ = ["JSTParams", "JointSearchTraining", "Layer", "searchable_layer"]
