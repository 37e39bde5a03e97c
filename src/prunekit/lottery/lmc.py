"""Linear mode connectivity and instability (Frankle, Dziugaite, Roy & Carbin, ICML 2020, Sec. 2-3).

Two copies of a network are trained from the same weights theta_k (step k) with different data orders to the end
of training; their error is evaluated at evenly spaced points of the straight line between them,
theta(alpha) = (1 - alpha) theta_A + alpha theta_B, and the error barrier (their "instability", Def. 1)

    barrier = max_alpha err(theta(alpha)) - (err(theta_A) + err(theta_B)) / 2

is reported for the train and test sets. A sparse network (a lottery level) keeps its mask along the path; a
structured ticket (a start point with a channel plan) is interpolated and evaluated as its physically smaller
subnet.

Interpolation covers every floating-point tensor of the state_dict (BatchNorm running statistics included, as
the interpolated network is evaluated in eval mode); integer buffers (num_batches_tracked) are copied from A.

    RUN/copy_a/, RUN/copy_b/   ordinary run directories (resumable), started with Trainer(start=StartPoint(...))
    RUN/lmc.json               alphas, train/test errors along the path, barriers, endpoints' accuracies
    RUN/lmc.png                the two error curves
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit import io
from prunekit.channels import materialize
from prunekit.config import RunConfig
from prunekit.seeding import derived_seed
from prunekit.train import checkpoint as ckpt
from prunekit.train.loop import evaluate
from prunekit.train.trainer import StartPoint, Trainer

LMC_SEED_PURPOSE = 0x11C0

Accuracy = Callable[[nn.Module], float]


def interpolate_state(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], alpha: float,
                      masks: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """(1 - alpha) a + alpha b for floating tensors (A's value for the others), masked positions set to 0."""
    out = {}
    for name, ta in a.items():
        tb = b[name]
        value = torch.lerp(ta, tb, alpha) if ta.is_floating_point() else ta.clone()
        if masks is not None and name in masks:
            value = value.masked_fill(~masks[name].to(value.device), 0)
        out[name] = value
    return out


def error_barrier(errors: list[float]) -> float:
    """max error on the path minus the mean of the endpoints' errors (ICML 2020, Def. 1)."""
    return max(errors) - (errors[0] + errors[-1]) / 2


def evaluate_path(model: nn.Module, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
                  accuracy: Mapping[str, Accuracy], points: int = 30,
                  masks: Mapping[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Errors of `model` loaded with `points` evenly spaced interpolations (alpha 0..1) for each named accuracy
    function, and each one's barrier."""
    if points < 2:
        raise ValueError("the path needs at least its two endpoints")
    work = copy.deepcopy(model)
    alphas = [i / (points - 1) for i in range(points)]
    errors: dict[str, list[float]] = {name: [] for name in accuracy}
    for alpha in alphas:
        work.load_state_dict(interpolate_state(a, b, alpha, masks))
        for name, fn in accuracy.items():
            errors[name].append(1.0 - fn(work))
    return {"alphas": alphas, "errors": errors, "barrier": {n: error_barrier(e) for n, e in errors.items()}}


@dataclasses.dataclass
class LmcResult:
    path: dict[str, Any]
    start_step: int

    def to_json(self) -> dict[str, Any]:
        return {"start_step": self.start_step, **self.path}


def train_copies(cfg: RunConfig, start: StartPoint, root: Path, quiet: bool = True
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Train copies A and B from `start` with data orders seeded apart; returns their final state_dicts. A copy
    already finished is reused, one interrupted is resumed."""
    finals = []
    for index, name in enumerate(("copy_a", "copy_b")):
        run_dir = root / name
        if not (run_dir / "summary.json").exists():
            if (run_dir / "checkpoints" / "latest.json").exists():
                Trainer.resume(run_dir, quiet=quiet).fit()
            else:
                if run_dir.exists():
                    shutil.rmtree(run_dir)
                copy_cfg = copy.deepcopy(cfg)
                copy_cfg.name = f"{cfg.name}-{name}"
                copy_cfg.train.data_seed = derived_seed(cfg.train.seed, LMC_SEED_PURPOSE, index)
                Trainer(copy_cfg, run_dir, quiet=quiet, start=start).fit()
        finals.append(ckpt.load_checkpoint(run_dir / "checkpoints").model)
    return finals[0], finals[1]


def run_lmc(cfg: RunConfig, start: StartPoint, root: str | Path, probe: Trainer, points: int = 30,
            quiet: bool = True, train_eval_limit: int | None = None) -> LmcResult:
    """Train the two copies from `start` into `root` and evaluate the path; writes lmc.json and lmc.png.

    `probe` is a set-up Trainer of `cfg` (its model, unaugmented train loader and test loader are used);
    `train_eval_limit` evaluates the train error on the first N batches only (None: all)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    a, b = train_copies(cfg, start, root, quiet=quiet)
    train_loader, test_loader = probe.plain_train_loader, probe.test_loader

    def train_acc(model: nn.Module) -> float:
        return evaluate(model, _Limited(train_loader, train_eval_limit))[1]

    def test_acc(model: nn.Module) -> float:
        return evaluate(model, test_loader)[1]

    masks = dict(start.masks) if start.masks is not None else None
    model = probe.state.supernet
    if start.plan is not None:  # a structured ticket: the copies trained (and are interpolated as) the subnet
        model = materialize(model, start.plan, probe.state.groups)
    path = evaluate_path(model, a, b, {"train": train_acc, "test": test_acc}, points, masks)
    result = LmcResult(path=path, start_step=start.step)
    io.write_json(root / "lmc.json", result.to_json())
    io.write_bytes(root / "lmc.png", plot(result))
    return result


class _Limited:
    """The first `limit` batches of a loader (evaluation only needs `iterate` and `device`)."""

    def __init__(self, loader: Any, limit: int | None) -> None:
        self.loader, self.limit, self.device = loader, limit, loader.device

    def iterate(self, epoch: int) -> Any:
        for i, batch in enumerate(self.loader.iterate(epoch)):
            if self.limit is not None and i >= self.limit:
                return
            yield batch


def plot(result: LmcResult) -> bytes:
    from prunekit.report.figures import new_figure, png_bytes

    fig = new_figure(5.0, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    for name, errors in result.path["errors"].items():
        ax.plot(result.path["alphas"], [100 * e for e in errors], marker=".",
                label=f"{name} (barrier {100 * result.path['barrier'][name]:.2f} pp)")
    ax.set_xlabel("interpolation alpha (copy A -> copy B)")
    ax.set_ylabel("error (%)")
    ax.set_title(f"linear mode connectivity from step {result.start_step}")
    ax.legend()
    return png_bytes(fig)
