"""The Trainer: runs a RunConfig into a run directory. Everything around a pruning decision (absorb, materialize,
optimizer rebuild with sliced state) lives in `SupernetState`; the Trainer adds data, schedules, logging,
checkpoints and the summary. See DESIGN.md.

Run directory (DESIGN.md, Conventions):
    config.yaml      the resolved configuration
    metrics.jsonl    one JSON object per epoch ("kind": "epoch") and per event ("kind": "decision", ...)
    summary.json     final figures, read by scripts
    checkpoints/     see prunekit.train.checkpoint
    model/           the final (pruned) model: model.safetensors + pruned.json, loadable by prunekit.load
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit import io, rundir
from prunekit.channels import ChannelPlan, load_optimizer_state_by_name, optimizer_state_by_name, save_pruned_model
from prunekit.channels.optimizer_state import OptimizerState
from prunekit.config import RunConfig, apply_overrides, build_dataclass, parse_override, read_yaml
from prunekit.config_checks import check_config
from prunekit.data import BatchLoader, DataSplits, load_data
from prunekit.data.loader import on_device
from prunekit.errors import UserError
from prunekit.measure import TrainingCostLedger, count_macs, count_params
from prunekit.memory_format import to_channels_last
from prunekit.methods import build_method
from prunekit.methods.base import Method
from prunekit.models import create_model
from prunekit.seeding import derived_seed
from prunekit.train import checkpoint as ckpt
from prunekit.train.distributed import Distributed
from prunekit.train.loop import EpochTally, LoopHooks, TrainingLoop, autocast, compiled, evaluate
from prunekit.train.optim import build_optimizer, flatten_optimizer_state, unflatten_optimizer_state
from prunekit.train.steps import parse_step
from prunekit.train.supernet import SupernetState
from prunekit.weights import WeightMasks

# Settings `prunekit train --resume RUN --set key=value` may change: how the run is executed, or the learning rate
# (to continue a run that diverged from its last good checkpoint); never what defines the model, data or method.
RESUMABLE_KEYS = frozenset({
    "optim.lr", "train.threads", "train.device", "train.progress", "train.tensorboard", "train.eval_batch_size",
    "train.checkpoint_every", "train.checkpoint_every_steps", "baseline_run", "data.on_device", "train.compile",
    "train.compile_mode",
})


def non_default_settings(cfg: RunConfig) -> dict[str, Any]:
    """The settings of `cfg` that differ from RunConfig's defaults, as a nested dict (`name` left out)."""

    def diff(value: Any, default: Any) -> Any:
        if isinstance(value, dict) and isinstance(default, dict) and default:
            out = {k: d for k, v in value.items() if (d := diff(v, default.get(k, _MISSING))) is not _MISSING}
            return out if out else _MISSING
        return _MISSING if value == default else value

    settings = diff(cfg.to_dict(), RunConfig().to_dict())
    settings = {} if settings is _MISSING else settings
    settings.pop("name", None)
    return settings


_MISSING = object()


def run_dir_name(cfg: RunConfig) -> str:
    """`<name>-<8 hex digits>` of the settings that differ from their defaults (OpenLTH style): runs are named by
    their settings, and adding a config field with a default does not rename existing runs."""
    digest = hashlib.sha256(json.dumps(non_default_settings(cfg), sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.name}-{digest}"


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"train.device {name!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"train.device is {name!r} but CUDA is not available here; use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"train.device is {name!r} but only {torch.cuda.device_count()} GPU(s) exist")
    elif device.type != "cpu":
        raise UserError(f"train.device {name!r} is not supported; use cpu, cuda, cuda:N or auto")
    return device


def check_model_accepts(model: nn.Module, example_inputs: torch.Tensor, name: str) -> None:
    """One forward pass in eval mode; a shape mismatch between model and data becomes a one-line UserError."""
    from prunekit.measure._modes import eval_mode

    try:
        with torch.no_grad(), eval_mode(model):
            model(example_inputs)
    except RuntimeError as exc:
        shape = "x".join(str(s) for s in example_inputs.shape[1:])
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"model {name!r} does not accept inputs of shape {shape} ({first})") from None


@dataclass
class StartPoint:
    """Where a fresh run starts instead of its seeded initialisation at step 0: a lottery-ticket level rewound to
    step k, one of the two copies of a linear-mode-connectivity check, a federated client's round.

    weights: a full state_dict of the model (the supernet), loaded strictly; plan: a channel plan materialized
    before the first step (needs a method with a channel_policy; a structured lottery ticket trains physically
    smaller); masks: weight masks put in force before the first step (supernet coordinates); step: the global step
    to start at (the learning rate follows the schedule from there); optimizer: by-name optimizer state of the
    model that trains first (the subnet when a plan is given; None: a fresh optimizer)."""

    weights: Mapping[str, torch.Tensor] | None = None
    plan: ChannelPlan | None = None
    masks: Mapping[str, torch.Tensor] | None = None
    step: int = 0
    optimizer: OptimizerState | None = None


class Trainer(LoopHooks):
    """Train `cfg` into `run_dir`. `on_step(global_step)` is called after every optimizer step; `start` starts a
    fresh run from given weights, masks and step (see StartPoint)."""

    def __init__(self, cfg: RunConfig, run_dir: str | os.PathLike[str], *, quiet: bool = False,
                 on_step: Callable[[int], None] | None = None, start: StartPoint | None = None) -> None:
        self.cfg = cfg
        self.start = start
        self.run_dir = Path(run_dir)
        self.on_step = on_step
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.dist = Distributed.from_env()  # set when started by torchrun with more than one process
        self.is_main = self.dist is None or self.dist.is_main
        self.quiet = quiet or not self.is_main
        self.device = select_device(cfg.train.device)
        if self.dist is not None:
            self.device = self.dist.device(self.device)
        self.tb_writer: Any = None
        self._resuming = False
        self._last_eval: tuple[float, float] | None = None
        self._metrics_lines = 0
        self._bar: Any = None
        self._lock: rundir.RunLock | None = None
        self._resume_overrides: list[str] = []

    @classmethod
    def resume(cls, run_dir: str | os.PathLike[str], overrides: list[str] | None = None, **kwargs: Any) -> Trainer:
        """A Trainer that continues `run_dir`. `overrides` ("key=value") may change only RESUMABLE_KEYS; the run's
        config.yaml is rewritten with them once the run restarts."""
        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"{run_dir}: not a run directory (config.yaml missing)")
        raw = read_yaml(run_dir / "config.yaml")
        for text in overrides or []:
            key = parse_override(text)[0]
            if ".".join(key) not in RESUMABLE_KEYS:
                raise UserError(f"--set {'.'.join(key)} cannot change on resume (it would make the run another "
                                f"run); keys that can: {', '.join(sorted(RESUMABLE_KEYS))}")
        cfg = check_config(build_dataclass(RunConfig, apply_overrides(raw, list(overrides or []))))
        trainer = cls(cfg, run_dir, **kwargs)
        trainer._resuming = True
        trainer._resume_overrides = list(overrides or [])
        return trainer

    @property
    def data_seed(self) -> int:
        t = self.cfg.train
        return t.seed if t.data_seed is None else t.data_seed

    # ------------------------------------------------------------------ set-up
    def _check_run_dir_free(self) -> None:
        if self._resuming or not self.run_dir.exists():
            return
        if rundir.has_no_checkpoint(self.run_dir) and (self.run_dir / "config.yaml").exists():
            raise UserError(f"run directory {self.run_dir} holds a run that stopped before its first checkpoint; "
                            f"`prunekit train --resume {self.run_dir}` starts it again from the beginning, or "
                            f"choose another --out")
        if any(p.name != rundir.LOCK_NAME for p in self.run_dir.iterdir()):
            raise UserError(f"run directory {self.run_dir} already exists and is not empty; "
                            f"use `prunekit train --resume {self.run_dir}` or choose another --out")

    def _build_loaders(self, data: DataSplits) -> None:
        d, t = self.cfg.data, self.cfg.train
        if d.on_device:  # one device copy of each split, shared by the loaders over it
            data = DataSplits(on_device(data.train, self.device), on_device(data.test, self.device),
                              on_device(data.val, self.device) if data.val is not None else None, data.mean,
                              data.std)
        common = dict(mean=data.mean, std=data.std, normalize=d.normalize, device=self.device,
                      channels_last=t.channels_last, resident=d.on_device)
        self.train_loader = BatchLoader(data.train, t.batch_size, shuffle=True, augment=d.augment,
                                        crop_padding=d.crop_padding, flip=d.flip, seed=self.data_seed, **common)
        self.test_loader = BatchLoader(data.test, t.eval_batch_size, shuffle=False, augment=False, **common)
        self.val_loader = (BatchLoader(data.val, t.eval_batch_size, shuffle=False, augment=False, **common)
                           if data.val is not None else None)
        # Unaugmented training batches for criteria that look at activations (HRank).
        self.plain_train_loader = BatchLoader(data.train, t.batch_size, shuffle=True, augment=False,
                                              seed=self.data_seed, **common)

    def _to_device(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        if self.cfg.train.channels_last:
            model = to_channels_last(model)
        return model

    def _configure_torch(self) -> None:
        t = self.cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        if self.device.type == "cuda":
            # cuDNN autotuning picks the fastest kernels but makes runs non-reproducible.
            torch.backends.cudnn.benchmark = not t.deterministic

    def setup(self) -> None:
        """Data, model, method, supernet state and loop; writes nothing (see `fit` for when the run directory
        appears). `fit` calls it; call it yourself to inspect the initial model (`self.state.supernet`) or the
        data (`self.train_loader`) of a run without running it."""
        cfg, t = self.cfg, self.cfg.train
        self._configure_torch()
        if self.dist is not None:
            self.dist.start(self.device)
        self._check_run_dir_free()
        data = load_data(cfg.data)
        self._build_loaders(data)
        if self.dist is not None:
            self._shard_loaders(len(data.train))
        c, h, w = data.train.shape
        self.spec = {"name": cfg.model.name, "num_classes": data.train.num_classes, "in_channels": c,
                     "kwargs": dict(cfg.model.kwargs), "input_shape": [c, h, w]}
        torch.manual_seed(derived_seed(t.seed, 0x30DE1))
        supernet = self._to_device(create_model(cfg.model.name, num_classes=self.spec["num_classes"],
                                                in_channels=c, **cfg.model.kwargs))
        self.example_inputs = torch.zeros(2, c, h, w, device=self.device)
        if t.channels_last:
            self.example_inputs = self.example_inputs.to(memory_format=torch.channels_last)
        check_model_accepts(supernet, self.example_inputs, cfg.model.name)
        self.method: Method = build_method(cfg.method)
        self.state = SupernetState(supernet, self.example_inputs, self.method.channel_policy,
                                   make_optimizer=lambda m: build_optimizer(m, cfg.optim), prepare=self._to_device,
                                   method=self.method, wrap=self._wrap())
        val = self.val_loader
        self.ctx = self.state.context(steps_per_epoch=len(self.train_loader), epochs=t.epochs, device=self.device,
                                      train_batches=lambda: self.plain_train_loader.iterate(0),
                                      val_batches=(lambda: val.iterate(0)) if val is not None else None,
                                      log=self._log, seed=t.seed)
        self.ledger = TrainingCostLedger()
        self.loop = TrainingLoop(self.state, self.method, self.ctx, self.train_loader, epochs=t.epochs,
                                 lr=cfg.optim.lr, schedule=cfg.schedule, label_smoothing=t.label_smoothing,
                                 amp=t.amp, seed=self.data_seed, ledger=self.ledger, hooks=self,
                                 agree=self.dist.agree if self.dist is not None else None)
        self.kept_steps = self._kept_steps()
        self.baseline = self._read_baseline()

    def _wrap(self) -> Callable[[nn.Module], nn.Module] | None:
        """What the forward pass runs through: DDP when distributed, compiled when train.compile (for every new
        subnet again)."""
        wrap = self.dist.wrap if self.dist is not None else None
        return compiled(wrap, self.cfg.train.compile_mode) if self.cfg.train.compile else wrap

    def _shard_loaders(self, train_size: int) -> None:
        """Each process takes its share of every global batch (train.batch_size stays the global batch)."""
        world = self.dist.world
        last = train_size % self.cfg.train.batch_size
        if self.cfg.train.batch_size < world or 0 < last < world:
            raise UserError(f"train.batch_size {self.cfg.train.batch_size} over {train_size} samples leaves a batch "
                            f"smaller than the {world} processes; choose another batch size")
        for loader in (self.train_loader, self.test_loader, self.val_loader):
            if loader is not None:
                self.dist.shard(loader)

    def _kept_steps(self) -> dict[int, str]:
        """train.keep_checkpoints as {global step: name}."""
        kept: dict[int, str] = {}
        for spec in self.cfg.train.keep_checkpoints:
            try:
                kept[parse_step(spec, len(self.train_loader), self.cfg.train.epochs)] = str(spec)
            except ValueError as exc:
                raise UserError(f"train.keep_checkpoints: {exc}") from None
        return kept

    def _read_baseline(self) -> dict[str, Any] | None:
        """The dense run this one is compared with (`baseline_run`), checked before training starts."""
        if not self.cfg.baseline_run:
            return None
        path = Path(self.cfg.baseline_run) / "summary.json"
        base = io.read_json(path)
        if not isinstance(base, dict) or not base.get("train_flops") or not base.get("train_time_s"):
            raise UserError(f"{path}: baseline_run has no training FLOPs/time to compare with")
        return base

    # ------------------------------------------------------------------ logging
    def _log(self, record: dict[str, Any]) -> None:
        self._metrics_lines += 1
        if not self.is_main:
            return
        io.append_jsonl(self.metrics_path, record)
        if self.tb_writer is not None and record.get("kind") == "epoch":
            for key, value in record.items():
                if isinstance(value, int | float) and key != "epoch":
                    self.tb_writer.add_scalar(key, value, record["epoch"])

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def _progress(self, total: int, epoch: int) -> Any:
        mode = self.cfg.train.progress
        show = mode == "always" or (mode == "auto" and sys.stderr.isatty())
        if not show or self.quiet:
            return None
        from tqdm import tqdm

        return tqdm(total=total, desc=f"epoch {epoch + 1}/{self.cfg.train.epochs}", leave=False,
                    file=sys.stderr, dynamic_ncols=True)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, loader: BatchLoader) -> tuple[float, float]:
        """(mean loss, accuracy in 0..1) of the current model (over every process's shard when distributed)."""
        if self.dist is not None:
            return self.dist.evaluate(self.state.model, loader, amp=self.cfg.train.amp)
        return evaluate(self.state.model, loader, amp=self.cfg.train.amp)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.cfg.train.amp, self.device)

    # ------------------------------------------------------------------ the run
    def fit(self) -> dict[str, Any]:
        """Run (or resume) the training; returns the summary. The run directory's lock is released however it
        ends."""
        try:
            return self._fit()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _fit(self) -> dict[str, Any]:
        t = self.cfg.train
        self.setup()
        restart = self._resuming and rundir.has_no_checkpoint(self.run_dir)
        if self.dist is not None:
            self.dist.barrier()  # every process has checked the run directory before rank 0 changes it
        if self._resuming and self.is_main:
            self._take_lock()
        if restart:  # nothing to resume from (killed or diverged before the first checkpoint): start again
            if self.is_main:
                rundir.clear_for_restart(self.run_dir)
            self._say(f"{self.run_dir} has no checkpoint yet: starting the run again from the beginning")
            self._resuming = False
        step, tally = self._restore() if self._resuming else (self._apply_start(), None)
        initial = self.method.on_train_start(self.ctx)  # methods check their parameters against the run here
        if self.loop.agree is not None and not self._resuming:
            initial = self.loop.agree(initial)
        if self._resuming:
            self._restore_method_tensors()
            if self._resume_overrides and self.is_main:
                io.write_yaml(self.run_dir / "config.yaml", self.cfg.to_dict())
                self._say(f"resuming with {', '.join(self._resume_overrides)} (written to config.yaml)")
        elif self.is_main:  # only now is the run known to be able to start: nothing is written before
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self._lock is None:
                self._take_lock()
            io.write_yaml(self.run_dir / "config.yaml", self.cfg.to_dict())
        if t.tensorboard and self.is_main:
            self._open_tensorboard()
        if initial is not None and not self._resuming:
            self.loop.apply(initial, where="start")
        if not self._resuming:
            self.state.build_method_optimizer()
        if not self._resuming:
            self._say(f"training {self.cfg.model.name} ({count_params(self.state.model):,} params, "
                      f"{self.state.macs / 1e6:.2f}M MACs) with {self.method.name} for {t.epochs} epochs on "
                      f"{self.device}; run dir {self.run_dir}")
        else:
            spe = len(self.train_loader)
            self._say(f"resuming {self.run_dir} at epoch {step // spe + 1}/{t.epochs}, step {step % spe}/{spe}")
        try:
            self.loop.run(start_step=step, tally=tally)
        except (RuntimeError, ConnectionError) as exc:
            if self.dist is None or not _is_peer_failure(exc):
                raise
            raise UserError(f"rank {self.dist.rank}: another training process stopped ({str(exc).splitlines()[0]}); "
                            f"resume with `prunekit train --resume {self.run_dir}`") from None
        try:
            summary = self._finish()
        except io.StorageError as exc:
            raise UserError(f"{exc}; free some space, then `prunekit train --resume {self.run_dir}` finishes the "
                            f"run from its last checkpoint") from exc
        if self.dist is not None:
            self.dist.stop()
        return summary

    def _take_lock(self) -> None:
        """One process per run directory (a second gets a one-line error); then stale temporary files of a killed
        process can be removed safely."""
        self._lock = rundir.lock_run_dir(self.run_dir)
        rundir.clean_stale_temp_files(self.run_dir)

    def _apply_start(self) -> int:
        """Put `self.start` in force on the fresh state; returns the step to start at."""
        if self.start is None:
            return 0
        s, start = self.state, self.start
        if start.weights is not None:
            ckpt.load_state_strict(s.supernet, dict(start.weights), "start weights")
        if start.plan is not None:
            if s.groups is None:
                raise UserError(f"a start plan needs a channel method; {self.method.name} declares no channel_policy")
            s.apply_plan(start.plan)
        if start.optimizer:
            load_optimizer_state_by_name(s.optimizer, s.model, start.optimizer)
        if start.masks is not None:
            masks = WeightMasks({k: v.cpu() for k, v in start.masks.items()})
            masks.check(s.supernet, "start masks")
            s.set_masks(masks)
        total = len(self.train_loader) * self.cfg.train.epochs
        if not 0 <= start.step < total:
            raise UserError(f"start step {start.step} is outside this run's {total} steps")
        return start.step

    # ------------------------------------------------------------------ loop hooks
    def _checkpoint_or_stop(self, loop: TrainingLoop, mid_epoch: bool) -> None:
        try:
            self._save_checkpoint(loop, mid_epoch)
        except io.StorageError as exc:
            raise UserError(f"{exc}; the last good checkpoint is kept: free some space, then `prunekit train "
                            f"--resume {self.run_dir}`") from exc

    def after_step(self, loop: TrainingLoop) -> None:
        if self._bar is None:
            self._bar = self._progress(loop.steps_per_epoch, loop.epoch)
        if self._bar is not None:
            self._bar.update(1)
        every = self.cfg.train.checkpoint_every_steps
        mid_epoch = loop.step % loop.steps_per_epoch != 0  # epoch ends checkpoint in after_epoch
        if mid_epoch and ((every and loop.step % every == 0) or loop.step in self.kept_steps):
            self._checkpoint_or_stop(loop, mid_epoch=True)
        if self.on_step is not None:
            self.on_step(loop.step)

    def on_decision(self, loop: TrainingLoop, record: dict[str, Any]) -> None:
        self._log(record)
        self._last_eval = None  # the network changed

    def on_epoch_trained(self, loop: TrainingLoop, stats: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.dist is not None:
            self.dist.sync_buffers(self.state.model)
        self._last_eval = test_loss, test_acc = self.evaluate(self.test_loader)
        record: dict[str, Any] = {"kind": "epoch", **stats, "test_loss": test_loss, "test_accuracy": test_acc}
        if self.val_loader is not None:
            record["val_loss"], record["val_accuracy"] = self.evaluate(self.val_loader)
        self._log(record)
        self._say(f"epoch {stats['epoch'] + 1}/{self.cfg.train.epochs}  loss {stats['train_loss']:.4f}  "
                  f"train {100 * stats['train_accuracy']:.2f}%  test {100 * test_acc:.2f}%  "
                  f"{stats['epoch_time_s']:.1f}s  {self.state.macs / 1e6:.2f}M MACs")

    def after_epoch(self, loop: TrainingLoop) -> None:
        done = loop.step // loop.steps_per_epoch
        t = self.cfg.train
        if done % t.checkpoint_every == 0 or done == t.epochs or loop.step in self.kept_steps:
            self._checkpoint_or_stop(loop, mid_epoch=False)

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, loop: TrainingLoop, mid_epoch: bool) -> None:
        if not self.is_main:
            return
        s = self.state
        state: dict[str, Any] = {"plan": s.plan.to_json() if s.plan is not None else None,
                                 "method": self.method.state_dict(), "ledger": self.ledger.to_json(),
                                 "metrics_lines": self._metrics_lines}
        extra: dict[str, dict[str, torch.Tensor]] = {}
        if mid_epoch:
            state["tally"] = loop.current_tally().to_json()
            extra["rng"] = {"cpu": torch.get_rng_state()}
            if self.device.type == "cuda":
                extra["rng"]["cuda"] = torch.cuda.get_rng_state(self.device)
        if s.masks is not None:
            extra["masks"] = s.masks.to_tensors()
        method_tensors = {**self.method.state_tensors(),
                          **{f"param/{k}": v.detach() for k, v in self.method.method_parameters().items()}}
        if method_tensors:
            extra["method"] = method_tensors
        opt_tensors, opt_scalars = flatten_optimizer_state(s.method_optimizer_state())
        if opt_tensors or opt_scalars:
            extra["method_optimizer"] = opt_tensors
            state["method_optimizer_scalars"] = opt_scalars
        data = ckpt.CheckpointData(
            epoch=loop.step // loop.steps_per_epoch, step=loop.step, model=s.model.state_dict(),
            optimizer=optimizer_state_by_name(s.optimizer, s.model), state=state,
            supernet=s.supernet.state_dict() if s.pruned else None,
            supernet_optimizer=s.bank_state if s.pruned else None, extra=extra)
        ckpt.save_checkpoint(self.run_dir / "checkpoints", data, keep_as=self.kept_steps.get(loop.step))

    def _restore(self) -> tuple[int, EpochTally | None]:
        data = ckpt.load_checkpoint(self.run_dir / "checkpoints")
        for key in ("step", "ledger"):
            if key not in data.state:
                raise UserError(f"{self.run_dir / 'checkpoints'}: checkpoint state lacks {key!r}")
        plan = None
        if data.state.get("plan") is not None:
            ckpt.load_state_strict(self.state.supernet, data.supernet or {}, "checkpoint supernet")
            plan = ChannelPlan.from_json(data.state["plan"])
        masks = WeightMasks(data.extra["masks"]) if "masks" in data.extra else None
        self.state.restore(plan, data.model, data.optimizer, data.supernet_optimizer, ckpt.load_state_strict,
                           masks=masks)
        self.method.load_state_dict(data.state.get("method", {}))
        self.ledger = self.loop.ledger = TrainingCostLedger.from_json(data.state["ledger"])
        self._checkpoint = data
        self._truncate_metrics(data)
        tally = None
        if "tally" in data.state:
            tally = EpochTally.from_json(data.state["tally"])
            rng = data.extra.get("rng", {})
            if "cpu" not in rng:
                raise UserError(f"{self.run_dir / 'checkpoints'}: mid-epoch checkpoint lacks its RNG state")
            torch.set_rng_state(rng["cpu"])
            if "cuda" in rng and self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], self.device)
        step = data.step
        if not 0 <= step <= len(self.train_loader) * self.cfg.train.epochs:
            raise UserError(f"{self.run_dir / 'checkpoints'}: checkpoint step {step} is outside this run")
        return step, tally

    def _truncate_metrics(self, data: ckpt.CheckpointData) -> None:
        """Drop metric lines written after the checkpoint: the steps after it are run again."""
        if not self.metrics_path.exists():
            return
        records = io.read_jsonl(self.metrics_path)
        if not self.is_main:
            self._metrics_lines = int(data.state.get("metrics_lines", len(records)))
            return
        if "metrics_lines" in data.state:
            kept = records[: int(data.state["metrics_lines"])]
        else:  # checkpoints written before metrics_lines existed are at epoch ends
            kept = [r for r in records if r.get("epoch", -1) < data.epoch]
        io.write_text(self.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
        self._metrics_lines = len(kept)

    def _restore_method_tensors(self) -> None:
        """After on_train_start on resume: the method's tensors, its parameters and their optimizer."""
        data = self._checkpoint
        tensors = data.extra.get("method", {})
        params = self.method.method_parameters()
        with torch.no_grad():
            for name, param in params.items():
                key = f"param/{name}"
                if key not in tensors or tensors[key].shape != param.shape:
                    raise UserError(f"checkpoint lacks the method's parameter {name!r} (or its shape differs)")
                param.copy_(tensors[key])
        self.method.load_state_tensors({k: v for k, v in tensors.items() if not k.startswith("param/")})
        self.state.build_method_optimizer()
        state = unflatten_optimizer_state(data.extra.get("method_optimizer", {}),
                                          data.state.get("method_optimizer_scalars", {}))
        self.state.load_method_optimizer_state(state)

    # ------------------------------------------------------------------ the end
    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise UserError("train.tensorboard needs TensorBoard: pip install 'prunekit[tensorboard]'") from exc
        self.tb_writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def _finish(self) -> dict[str, Any]:
        s = self.state
        if self.dist is not None:
            self.dist.sync_buffers(s.model)
        test_loss, test_acc = self._last_eval or self.evaluate(self.test_loader)
        identical = self.dist.replicas_identical(s.model, s.plan) if self.dist is not None else None
        if self.is_main:
            save_pruned_model(self.run_dir / "model", s.model, s.plan or ChannelPlan(), self.spec,
                              policy=self.method.channel_policy or "all")
            if s.masks is not None:
                s.masks.save(self.run_dir / "model" / "masks.safetensors")
        totals = self.ledger.totals()
        summary: dict[str, Any] = {
            "method": self.method.name, "model": self.cfg.model.name, "dataset": self.cfg.data.name,
            "epochs": self.cfg.train.epochs, "test_accuracy": test_acc, "test_loss": test_loss,
            "params": count_params(s.model), "macs": s.macs, "flops": 2 * s.macs,
            "dense_params": count_params(s.supernet), "dense_macs": count_macs(s.supernet, self.example_inputs),
            "train_time_s": totals["train_time_s"], "train_flops": totals["train_flops"],
        }
        if s.masks is not None:
            summary["weight_density"] = s.masks.density()
        ratio = self.method.train_flops_ratio()
        if ratio is not None:  # the ledger counts the architecture's dense FLOPs; the method knows its sparsity
            summary["sparse_train_flops_ratio"] = ratio
            summary["sparse_train_flops"] = int(round(ratio * summary["train_flops"]))
        if self.dist is not None:
            summary["processes"] = self.dist.world
            summary["replicas_identical"] = identical
        if self.baseline is not None:
            summary["train_flops_saved"] = 1.0 - summary["train_flops"] / self.baseline["train_flops"]
            summary["train_time_saved"] = 1.0 - summary["train_time_s"] / self.baseline["train_time_s"]
        if self.is_main:
            io.write_json(self.run_dir / "summary.json", summary)
        if self.tb_writer is not None:
            self.tb_writer.close()
        return summary


def _is_peer_failure(exc: BaseException) -> bool:
    """Whether a collective failed because another process went away (gloo/NCCL connection errors)."""
    text = str(exc).lower()
    return isinstance(exc, ConnectionError) or any(
        word in text for word in ("connection", "gloo", "nccl", "broken pipe", "timed out", "peer"))
