"""Iterative magnitude pruning above the Trainer: every level is an ordinary run directory.

    RUN/settings.json              the run and lottery settings (a re-run with other settings is refused)
    RUN/init.safetensors           theta_0, the dense run's initial weights (exactly `prunekit train`'s)
    RUN/masks/level_NN.safetensors the ticket of level NN (computed once, from level NN-1's final weights): weight
                                   masks, or one channel keep vector per group (lottery.unit channels)
    RUN/level_00/                  the dense run (keeps the checkpoint at the rewind step)
    RUN/level_NN/                  level NN: the ticket, retrained from its start point (see `start_point`)
    RUN/level_NN_<control>/        the controls of level NN (reinit, random_prune), when asked for
    RUN/lottery.json               density, test accuracy and training cost per level, rebuilt after each level

Level L >= 1 (OpenLTH `LotteryRunner`, Renda et al. 2020 Table 1): prune `rate` of the remaining weights of level
L-1's final weights by magnitude, then retrain from
- reset: theta_0, step 0 (Frankle & Carbin 2019);
- weight_rewind: theta_k and the LR schedule from step k (Frankle et al. 2020, "Linear mode connectivity");
- lr_rewind: level L-1's final weights, the LR schedule from step k (Renda et al. 2020);
- finetune: level L-1's final weights, a constant final LR, for the T - k remaining steps.
With lottery.unit channels the level prunes channels (L1 filter norms over the channel groups, `lottery.channels`)
and starts on the materialized plan: the start weights restricted to the kept channels, physically smaller.
Each start is a fresh optimizer (OpenLTH). Running the same command again skips finished levels and resumes the
level in progress from its last checkpoint (Trainer.resume), so an interrupted driver ends bitwise equal to an
uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from prunekit import io
from prunekit.config import RunConfig
from prunekit.errors import UserError
from prunekit.lottery.config import LotteryConfig
from prunekit.lottery.units import LevelPruner, build_pruner
from prunekit.models import create_model
from prunekit.seeding import derived_seed
from prunekit.train import checkpoint as ckpt
from prunekit.train.schedules import learning_rate
from prunekit.train.steps import parse_step
from prunekit.train.trainer import StartPoint, Trainer

REINIT_SEED_PURPOSE = 0x4E1217
RANDOM_PRUNE_SEED_PURPOSE = 0x4A2D0


def level_name(level: int, control: str | None = None) -> str:
    return f"level_{level:02d}" + (f"_{control}" if control else "")


class LotteryDriver:
    """Runs (or resumes) the levels of one IMP experiment into `root`."""

    def __init__(self, cfg: RunConfig, lottery: LotteryConfig, root: str | Path, *, quiet: bool = False,
                 on_step: Callable[[int], None] | None = None) -> None:
        self.pruner: LevelPruner = build_pruner(lottery)
        self.cfg, self.lottery, self.root = self.pruner.run_config(cfg), lottery, Path(root)
        self.quiet, self.on_step = quiet, on_step
        self._probe: Trainer | None = None

    # ------------------------------------------------------------------ the experiment
    def run(self) -> dict[str, Any]:
        self._check_settings()
        init = self.initial_weights()
        self.train_level(0, None, StartPoint(weights=init, step=0), self.level_cfg(0))
        for level in range(1, self.lottery.levels + 1):
            mask = self.mask(level)
            start = self.start_point(level, mask)
            self.train_level(level, None, start, self.level_cfg(level))
            for control in self.lottery.controls:
                self.train_level(level, control, self.control_start(control, level, start), self.level_cfg(level))
        return self.write_summary()

    def _check_settings(self) -> None:
        settings = {"run": self.cfg.to_dict(), "lottery": self.lottery.to_dict()}
        path = self.root / "settings.json"
        if path.exists():
            if io.read_json(path) != json.loads(json.dumps(settings)):
                raise UserError(f"{self.root} holds a lottery run with other settings; choose another --out")
            return
        self.root.mkdir(parents=True, exist_ok=True)
        io.write_json(path, settings)

    # ------------------------------------------------------------------ steps and weights
    def probe(self) -> Trainer:
        """A Trainer set up but never run (it writes nothing): the data's steps per epoch and the initial model,
        built exactly as `prunekit train` builds them."""
        if self._probe is None:
            probe = Trainer(self.cfg, self.root / ".probe-never-written", quiet=True)
            probe.setup()
            self._probe = probe
        return self._probe

    @property
    def steps_per_epoch(self) -> int:
        return len(self.probe().train_loader)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.train.epochs

    @property
    def rewind_step(self) -> int:
        """k as a step (0 for mode reset, which ignores lottery.rewind_step)."""
        if self.lottery.mode == "reset":
            return 0
        try:
            return parse_step(self.lottery.rewind_step, self.steps_per_epoch, self.cfg.train.epochs)
        except ValueError as exc:
            raise UserError(f"lottery.rewind_step: {exc}") from None

    def initial_weights(self) -> dict[str, torch.Tensor]:
        path = self.root / "init.safetensors"
        if not path.exists():
            state = {k: v.detach().cpu().clone() for k, v in self.probe().state.supernet.state_dict().items()}
            io.save_tensors(path, state)
        return io.load_tensors(path)

    def rewind_weights(self) -> dict[str, torch.Tensor]:
        """theta_k: the dense run's weights at the rewind step (theta_0 when k = 0)."""
        if self.rewind_step == 0:
            return self.initial_weights()
        data = ckpt.load_checkpoint(self.root / level_name(0) / "checkpoints", name=self.lottery.rewind_step)
        if data.step != self.rewind_step:
            raise UserError(f"kept checkpoint {self.lottery.rewind_step!r} is step {data.step}, expected "
                            f"{self.rewind_step}")
        return data.model

    def final(self, level: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(full weights, ticket) at the end of a finished level (its last checkpoint): weight masks, or the
        channel unit's keep vectors."""
        data = ckpt.load_checkpoint(self.root / level_name(level) / "checkpoints")
        if data.step != self.total_steps:
            raise UserError(f"{self.root / level_name(level)} did not finish (checkpoint at step {data.step})")
        return self.pruner.finished_state(data, self.probe())

    def mask(self, level: int) -> dict[str, torch.Tensor]:
        """Level `level`'s mask, pruned from level-1's final weights (computed once, then read back)."""
        path = self.root / "masks" / f"{level_name(level)}.safetensors"
        if not path.exists():
            weights, masks = self.final(level - 1)
            model = self.model_with(weights)
            io.save_tensors(path, self.pruner.prune(model, masks, self.probe()))
        return io.load_tensors(path)

    def model_with(self, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        model = copy.deepcopy(self.probe().state.supernet)
        ckpt.load_state_strict(model, weights, "level weights")
        return model

    # ------------------------------------------------------------------ start points
    def start_point(self, level: int, mask: dict[str, torch.Tensor]) -> StartPoint:
        """Where level `level` (>= 1) starts, by retraining mode."""
        mode = self.lottery.mode
        if mode == "reset":
            return StartPoint(weights=self.initial_weights(), masks=mask, step=0)
        if mode == "weight_rewind":
            return StartPoint(weights=self.rewind_weights(), masks=mask, step=self.rewind_step)
        weights, _ = self.final(level - 1)  # lr_rewind, finetune: the trained weights
        return StartPoint(weights=weights, masks=mask, step=self.rewind_step)

    def level_start(self, level: int) -> StartPoint:
        """The start point level `level` trains from, as the Trainer gets it (a channel ticket as its plan)."""
        if level == 0:
            return StartPoint(weights=self.initial_weights(), step=0)
        return self.pruner.prepare_start(self.start_point(level, self.mask(level)), self.probe())

    def control_start(self, control: str, level: int, ticket: StartPoint) -> StartPoint:
        """reinit: the ticket's mask on fresh random weights; random_prune: a random mask of the ticket's
        per-tensor densities on the ticket's start weights (OpenLTH branches)."""
        assert ticket.masks is not None
        if control == "reinit":
            torch.manual_seed(derived_seed(self.cfg.train.seed, REINIT_SEED_PURPOSE, level))
            spec = self.probe().spec
            fresh = create_model(self.cfg.model.name, num_classes=spec["num_classes"], in_channels=spec["in_channels"],
                                 **self.cfg.model.kwargs).state_dict()
            return StartPoint(weights=fresh, masks=ticket.masks, step=ticket.step)
        generator = torch.Generator().manual_seed(derived_seed(self.cfg.train.seed, RANDOM_PRUNE_SEED_PURPOSE, level))
        masks = self.pruner.random_like(dict(ticket.masks), generator)
        return StartPoint(weights=ticket.weights, masks=masks, step=ticket.step)

    def level_cfg(self, level: int) -> RunConfig:
        """The run config of a level: level 0 keeps the rewind checkpoint; finetune levels a constant LR."""
        cfg = copy.deepcopy(self.cfg)
        cfg.name = f"{self.cfg.name}-{level_name(level)}"
        keep = self.lottery.rewind_step
        needs_kept = level == 0 and self.lottery.mode == "weight_rewind" and self.rewind_step > 0
        if needs_kept and keep not in cfg.train.keep_checkpoints:
            cfg.train.keep_checkpoints = [*cfg.train.keep_checkpoints, keep]
        if level > 0 and self.lottery.mode == "finetune":
            lr = self.lottery.finetune_lr
            if lr is None:
                lr = learning_rate(self.total_steps - 1, self.steps_per_epoch, cfg.train.epochs, cfg.optim.lr,
                                   cfg.schedule)
            cfg.optim.lr = lr
            cfg.schedule.name, cfg.schedule.warmup_epochs = "constant", 0.0
        return cfg

    # ------------------------------------------------------------------ one level
    def train_level(self, level: int, control: str | None, start: StartPoint, cfg: RunConfig) -> dict[str, Any]:
        run_dir = self.root / level_name(level, control)
        if (run_dir / "summary.json").exists():
            return io.read_json(run_dir / "summary.json")
        start = self.pruner.prepare_start(start, self.probe())
        label = level_name(level, control)
        if (run_dir / "checkpoints" / "latest.json").exists():
            self._say(f"[lottery] {label}: resuming {run_dir}")
            summary = Trainer.resume(run_dir, quiet=self.quiet, on_step=self.on_step).fit()
        else:
            if run_dir.exists():  # started, but killed before its first checkpoint: nothing worth keeping
                shutil.rmtree(run_dir)
            self._say(f"[lottery] {label}: training from step {start.step} ({self.lottery.mode})")
            summary = Trainer(cfg, run_dir, quiet=self.quiet, on_step=self.on_step, start=start).fit()
        self.write_summary()
        return summary

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    # ------------------------------------------------------------------ lottery.json
    def write_summary(self) -> dict[str, Any]:
        rows = []
        for level in range(self.lottery.levels + 1):
            for control in [None, *self.lottery.controls]:
                if level == 0 and control is not None:
                    continue
                path = self.root / level_name(level, control) / "summary.json"
                if not path.exists():
                    continue
                s = io.read_json(path)
                rows.append({"level": level, "run": level_name(level, control), "kind": control or "ticket",
                             "weight_density": s.get("weight_density", 1.0), "test_accuracy": s["test_accuracy"],
                             "params": s["params"], "macs": s["macs"], "train_time_s": s["train_time_s"],
                             "train_flops": s["train_flops"]})
        out = {"mode": self.lottery.mode, "unit": self.lottery.unit, "rate": self.lottery.rate,
               "rewind_step": self.rewind_step, "levels": rows,
               "finished": len(rows) == 1 + self.lottery.levels * (1 + len(self.lottery.controls))}
        io.write_json(self.root / "lottery.json", out)
        return out
