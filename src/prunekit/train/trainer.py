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
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunekit import io
from prunekit.channels import ChannelPlan, optimizer_state_by_name, save_pruned_model
from prunekit.config import RunConfig, build_dataclass, read_yaml
from prunekit.data import BatchLoader, DataSplits, load_data
from prunekit.errors import UserError
from prunekit.measure import TrainingCostLedger, count_macs, count_params
from prunekit.methods import build_method
from prunekit.methods.base import Decision, Method
from prunekit.models import create_model
from prunekit.seeding import derived_seed
from prunekit.train import checkpoint as ckpt
from prunekit.train.optim import build_optimizer, set_learning_rate
from prunekit.train.schedules import learning_rate
from prunekit.train.supernet import SupernetState


def run_dir_name(cfg: RunConfig) -> str:
    """`<name>-<8 hex digits of the resolved config>`: runs are named by their settings (OpenLTH style)."""
    digest = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
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


class Trainer:
    """Train `cfg` into `run_dir`. `on_step(global_step)` is called after every optimizer step."""

    def __init__(self, cfg: RunConfig, run_dir: str | os.PathLike[str], *, quiet: bool = False,
                 on_step: Callable[[int], None] | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        self.on_step = on_step
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.device = select_device(cfg.train.device)
        self.tb_writer: Any = None
        self._resuming = False
        self._last_eval: tuple[float, float] | None = None

    @classmethod
    def resume(cls, run_dir: str | os.PathLike[str], **kwargs: Any) -> Trainer:
        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"{run_dir}: not a run directory (config.yaml missing)")
        trainer = cls(build_dataclass(RunConfig, read_yaml(run_dir / "config.yaml")), run_dir, **kwargs)
        trainer._resuming = True
        return trainer

    # ------------------------------------------------------------------ set-up
    def _check_run_dir_free(self) -> None:
        if not self._resuming and self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise UserError(f"run directory {self.run_dir} already exists and is not empty; "
                            f"use `prunekit train --resume {self.run_dir}` or choose another --out")

    def _build_loaders(self, data: DataSplits) -> None:
        d, t = self.cfg.data, self.cfg.train
        common = dict(mean=data.mean, std=data.std, normalize=d.normalize, device=self.device,
                      channels_last=t.channels_last)
        self.train_loader = BatchLoader(data.train, t.batch_size, shuffle=True, augment=d.augment,
                                        crop_padding=d.crop_padding, flip=d.flip, seed=t.seed, **common)
        self.test_loader = BatchLoader(data.test, t.eval_batch_size, shuffle=False, augment=False, **common)
        self.val_loader = (BatchLoader(data.val, t.eval_batch_size, shuffle=False, augment=False, **common)
                           if data.val is not None else None)
        # Unaugmented training batches for criteria that look at activations (HRank).
        self.plain_train_loader = BatchLoader(data.train, t.batch_size, shuffle=True, augment=False,
                                              seed=t.seed, **common)

    def _to_device(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        if self.cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
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

    def _setup(self) -> None:
        """Data, model, method and supernet state; writes nothing (see `fit` for when the run directory appears)."""
        cfg, t = self.cfg, self.cfg.train
        self._configure_torch()
        self._check_run_dir_free()
        data = load_data(cfg.data)
        self._build_loaders(data)
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
                                   make_optimizer=lambda m: build_optimizer(m, cfg.optim), prepare=self._to_device)
        self.ctx = self.state.context(steps_per_epoch=len(self.train_loader), epochs=t.epochs, device=self.device,
                                      train_batches=lambda: self.plain_train_loader.iterate(0), log=self._log,
                                      seed=t.seed)
        self.ledger = TrainingCostLedger()
        self.baseline = self._read_baseline()

    def _read_baseline(self) -> dict[str, Any] | None:
        """The dense run this one is compared with (`baseline_run`), checked before training starts."""
        if not self.cfg.baseline_run:
            return None
        path = Path(self.cfg.baseline_run) / "summary.json"
        base = io.read_json(path)
        if not isinstance(base, dict) or not base.get("train_flops") or not base.get("train_time_s"):
            raise UserError(f"{path}: baseline_run has no training FLOPs/time to compare with")
        return base

    def _apply_decision(self, decision: Decision, epoch: int) -> None:
        record: dict[str, Any] = {"kind": "decision", "epoch": epoch, "method": self.method.name}
        record.update(self.state.apply(decision))
        record.update(decision.info)
        self._log(record)

    # ------------------------------------------------------------------ logging
    def _log(self, record: dict[str, Any]) -> None:
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
    @torch.no_grad()
    def evaluate(self, loader: BatchLoader) -> tuple[float, float]:
        """(mean loss, accuracy in 0..1) of the current model."""
        model = self.state.model
        model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        count = 0
        for images, labels in loader.iterate(0):
            with self._autocast():
                logits = model(images)
            loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
            correct += (logits.argmax(1) == labels).sum()
            count += labels.numel()
        return loss_sum.item() / max(1, count), correct.item() / max(1, count)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.cfg.train.amp:
            return contextlib.nullcontext()
        # bfloat16 on every device: it needs no loss scaling.
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    # ------------------------------------------------------------------ the run
    def fit(self) -> dict[str, Any]:
        t = self.cfg.train
        self._setup()
        start_epoch, step = self._restore() if self._resuming else (0, 0)
        initial = self.method.on_train_start(self.ctx)  # methods check their parameters against the run here
        if not self._resuming:  # only now is the run known to be able to start: nothing is written before
            self.run_dir.mkdir(parents=True, exist_ok=True)
            io.write_yaml(self.run_dir / "config.yaml", self.cfg.to_dict())
        if t.tensorboard:
            self._open_tensorboard()
        if initial is not None and start_epoch == 0:
            self._apply_decision(initial, -1)
        if start_epoch == 0:
            self._say(f"training {self.cfg.model.name} ({count_params(self.state.model):,} params, "
                      f"{self.state.macs / 1e6:.2f}M MACs) with {self.method.name} for {t.epochs} epochs on "
                      f"{self.device}; run dir {self.run_dir}")
        else:
            self._say(f"resuming {self.run_dir} at epoch {start_epoch + 1}/{t.epochs}")

        for epoch in range(start_epoch, t.epochs):
            self.ctx.epoch = epoch
            torch.manual_seed(derived_seed(t.seed, 0xE90C, epoch))  # dropout and other global-RNG users
            record, step = self._train_epoch(epoch, step)
            self._log(record)
            self._say(f"epoch {epoch + 1}/{t.epochs}  loss {record['train_loss']:.4f}  "
                      f"train {100 * record['train_accuracy']:.2f}%  test {100 * record['test_accuracy']:.2f}%  "
                      f"{record['epoch_time_s']:.1f}s  {self.state.macs / 1e6:.2f}M MACs")
            self.state.sync()
            decision = self.method.on_epoch_end(epoch, self.ctx)
            if decision is not None:
                self._apply_decision(decision, epoch)
                self._last_eval = None  # the network changed
            if (epoch + 1) % t.checkpoint_every == 0 or epoch + 1 == t.epochs:
                self._save_checkpoint(epoch + 1, step)
        return self._finish()

    def _train_epoch(self, epoch: int, step: int) -> tuple[dict[str, Any], int]:
        t = self.cfg.train
        model, optimizer = self.state.model, self.state.optimizer
        steps_per_epoch = len(self.train_loader)
        model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen, data_time, lr = 0, 0.0, 0.0
        bar = self._progress(steps_per_epoch, epoch)
        start = time.perf_counter()
        batches = iter(self.train_loader.iterate(epoch))
        while True:
            fetch = time.perf_counter()
            try:
                images, labels = next(batches)
            except StopIteration:
                break
            data_time += time.perf_counter() - fetch
            lr = learning_rate(step, steps_per_epoch, t.epochs, self.cfg.optim.lr, self.cfg.schedule)
            set_learning_rate(optimizer, lr)
            with self._autocast():
                logits = model(images)
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=t.label_smoothing)
            total = loss + self.method.regularizer(model)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.method.after_backward(model)
            optimizer.step()
            self.method.after_step(model)
            step += 1
            loss_sum += loss.detach() * labels.numel()
            correct += (logits.detach().argmax(1) == labels).sum()
            seen += labels.numel()
            if bar is not None:
                bar.update(1)
            if self.on_step is not None:
                self.on_step(step)
        if bar is not None:
            bar.close()
        epoch_time = time.perf_counter() - start
        train_loss = loss_sum.item() / max(1, seen)
        if not math.isfinite(train_loss):
            raise UserError(f"training diverged in epoch {epoch + 1} (loss {train_loss}); lower optim.lr")
        cost = self.ledger.record_epoch(epoch, self.state.macs, seen, epoch_time)
        self._last_eval = test_loss, test_acc = self.evaluate(self.test_loader)
        record: dict[str, Any] = {
            "kind": "epoch", "epoch": epoch, "step": step, "lr": lr, "train_loss": train_loss,
            "train_accuracy": correct.item() / max(1, seen), "test_loss": test_loss, "test_accuracy": test_acc,
            "epoch_time_s": epoch_time, "data_time_s": data_time, "macs": self.state.macs,
            "params": count_params(model), "train_flops": cost["train_flops"],
        }
        if self.val_loader is not None:
            record["val_loss"], record["val_accuracy"] = self.evaluate(self.val_loader)
        return record, step

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, epoch: int, step: int) -> None:
        s = self.state
        data = ckpt.CheckpointData(
            epoch=epoch,
            model=s.model.state_dict(),
            optimizer=optimizer_state_by_name(s.optimizer, s.model),
            state={"step": step, "plan": s.plan.to_json() if s.plan is not None else None,
                   "method": self.method.state_dict(), "ledger": self.ledger.to_json()},
            supernet=s.supernet.state_dict() if s.pruned else None,
            supernet_optimizer=s.bank_state if s.pruned else None,
        )
        ckpt.save_checkpoint(self.run_dir / "checkpoints", data)

    def _restore(self) -> tuple[int, int]:
        data = ckpt.load_checkpoint(self.run_dir / "checkpoints")
        for key in ("step", "ledger"):
            if key not in data.state:
                raise UserError(f"{self.run_dir / 'checkpoints'}: checkpoint state lacks {key!r}")
        plan = None
        if data.state.get("plan") is not None:
            ckpt.load_state_strict(self.state.supernet, data.supernet or {}, "checkpoint supernet")
            plan = ChannelPlan.from_json(data.state["plan"])
        self.state.restore(plan, data.model, data.optimizer, data.supernet_optimizer, ckpt.load_state_strict)
        self.method.load_state_dict(data.state.get("method", {}))
        self.ledger = TrainingCostLedger.from_json(data.state["ledger"])
        # Drop metric lines written after this checkpoint: the interrupted epoch is run again.
        if self.metrics_path.exists():
            kept = [r for r in io.read_jsonl(self.metrics_path) if r.get("epoch", -1) < data.epoch]
            io.write_text(self.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
        return data.epoch, int(data.state["step"])

    # ------------------------------------------------------------------ the end
    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise UserError("train.tensorboard needs TensorBoard: pip install 'prunekit[tensorboard]'") from exc
        self.tb_writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def _finish(self) -> dict[str, Any]:
        s = self.state
        save_pruned_model(self.run_dir / "model", s.model, s.plan or ChannelPlan(), self.spec,
                          policy=self.method.channel_policy or "all")
        test_loss, test_acc = self._last_eval or self.evaluate(self.test_loader)
        totals = self.ledger.totals()
        summary: dict[str, Any] = {
            "method": self.method.name, "model": self.cfg.model.name, "dataset": self.cfg.data.name,
            "epochs": self.cfg.train.epochs, "test_accuracy": test_acc, "test_loss": test_loss,
            "params": count_params(s.model), "macs": s.macs, "flops": 2 * s.macs,
            "dense_params": count_params(s.supernet), "dense_macs": count_macs(s.supernet, self.example_inputs),
            "train_time_s": totals["train_time_s"], "train_flops": totals["train_flops"],
        }
        if self.baseline is not None:
            summary["train_flops_saved"] = 1.0 - summary["train_flops"] / self.baseline["train_flops"]
            summary["train_time_saved"] = 1.0 - summary["train_time_s"] / self.baseline["train_time_s"]
        io.write_json(self.run_dir / "summary.json", summary)
        if self.tb_writer is not None:
            self.tb_writer.close()
        return summary

