"""The Trainer: runs a RunConfig into a run directory and owns everything around a pruning decision
(absorb, materialize, optimizer rebuild with sliced state, logging, checkpoints). See DESIGN.md.

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
from prunekit.channels import load_optimizer_state_by_name, optimizer_state_by_name
from prunekit.config import RunConfig, build_dataclass
from prunekit.data import BatchLoader, DataSplits, load_data
from prunekit.errors import UserError
from prunekit.measure import TrainingCostLedger, count_macs, count_params
from prunekit.methods import build_method
from prunekit.methods.base import Decision, Method, TrainContext
from prunekit.models import create_model
from prunekit.train import checkpoint as ckpt
from prunekit.train.optim import build_optimizer, set_learning_rate
from prunekit.train.schedules import learning_rate


def run_dir_name(cfg: RunConfig) -> str:
    """`<name>-<8 hex digits of the resolved config>`: runs are named by their settings (OpenLTH style)."""
    digest = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.name}-{digest}"


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device is {name!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return device


def derived_seed(seed: int, *parts: int) -> int:
    """A seed for one purpose (e.g. the global RNG in epoch e) that does not collide with other purposes."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


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

    # ------------------------------------------------------------------ set-up
    @classmethod
    def resume(cls, run_dir: str | os.PathLike[str], **kwargs: Any) -> Trainer:
        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"{run_dir}: not a run directory (config.yaml missing)")
        from prunekit.config import read_yaml

        cfg = build_dataclass(RunConfig, read_yaml(run_dir / "config.yaml"))
        trainer = cls(cfg, run_dir, **kwargs)
        trainer._resuming = True
        return trainer

    _resuming = False

    def _prepare_run_dir(self) -> None:
        if self._resuming:
            return
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise UserError(f"run directory {self.run_dir} already exists and is not empty; "
                            f"use `prunekit train --resume {self.run_dir}` or choose another --out")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        io.write_yaml(self.run_dir / "config.yaml", self.cfg.to_dict())

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

    def _model_spec(self, data: DataSplits) -> dict[str, Any]:
        c, h, w = data.train.shape
        return {"name": self.cfg.model.name, "num_classes": data.train.num_classes, "in_channels": c,
                "kwargs": dict(self.cfg.model.kwargs), "input_shape": [c, h, w]}

    def _to_device(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        if self.cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    # ------------------------------------------------------------------ structured decisions
    def _apply_plan(self, plan: Any) -> dict[str, Any]:
        """Absorb the current subnet into the supernet, materialize `plan`, rebuild the optimizer with the
        sliced state. Returns MACs/params before and after."""
        from prunekit.channels import absorb, absorb_optimizer_state, materialize, slice_optimizer_state

        before = {"macs": self.macs, "params": count_params(self.model)}
        groups = self.ctx.groups
        state = optimizer_state_by_name(self.optimizer, self.model)
        if self.model is self.supernet:
            self.bank_state = state
        else:
            absorb(self.model, self.supernet, self.plan, groups)
            absorb_optimizer_state(state, self.bank_state, self.supernet, self.plan, groups)
        plan.validate(groups)
        self.plan = plan
        self.model = self._to_device(materialize(self.supernet, plan, groups))
        self._new_optimizer(slice_optimizer_state(self.bank_state, self.supernet, plan, groups))
        self.macs = count_macs(self.model, self.example_inputs)
        return {"macs_before": before["macs"], "params_before": before["params"],
                "macs_after": self.macs, "params_after": count_params(self.model)}

    def _new_optimizer(self, state: dict[str, dict[str, Any]] | None) -> None:
        self.optimizer = build_optimizer(self.model, self.cfg.optim)
        if state:
            load_optimizer_state_by_name(self.optimizer, self.model, state)
        self.ctx.model, self.ctx.optimizer, self.ctx.plan = self.model, self.optimizer, self.plan

    def _apply_decision(self, decision: Decision, epoch: int) -> None:
        record: dict[str, Any] = {"kind": "decision", "epoch": epoch, "method": self.method.name}
        if decision.plan is not None:
            if self.ctx.groups is None:
                raise RuntimeError(f"method {self.method.name!r} returned a channel plan but declares no "
                                   f"channel_policy")
            record.update(self._apply_plan(decision.plan))
            record["kept"] = {name: len(idx) for name, idx in decision.plan.keep.items()}
        if decision.masks is not None:
            params = dict(self.model.named_parameters())
            with torch.no_grad():
                for name, mask in decision.masks.items():
                    params[name].mul_(mask.to(params[name].device, params[name].dtype))
            record["masked_tensors"] = len(decision.masks)
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
        self.model.eval()
        loss_sum, correct, count = 0.0, 0, 0
        for images, labels in loader.iterate(0):
            with self._autocast():
                logits = self.model(images)
            loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
            count += labels.numel()
        return loss_sum / max(1, count), correct / max(1, count)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.cfg.train.amp:
            return contextlib.nullcontext()
        # bfloat16 needs no loss scaling; it is the supported mixed-precision type on CPU.
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    # ------------------------------------------------------------------ the run
    def fit(self) -> dict[str, Any]:
        cfg, t = self.cfg, self.cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self._prepare_run_dir()
        torch.manual_seed(derived_seed(t.seed, 0xD47A))
        data = load_data(cfg.data)
        self._build_loaders(data)
        self.spec = self._model_spec(data)
        torch.manual_seed(derived_seed(t.seed, 0x30DE1))
        self.supernet = self._to_device(create_model(cfg.model.name, num_classes=self.spec["num_classes"],
                                                     in_channels=self.spec["in_channels"], **cfg.model.kwargs))
        c, h, w = self.spec["input_shape"]
        self.example_inputs = torch.zeros(2, c, h, w, device=self.device)
        if t.channels_last:
            self.example_inputs = self.example_inputs.to(memory_format=torch.channels_last)
        self.method: Method = build_method(cfg.method)
        self.model, self.plan, self.bank_state = self.supernet, None, {}
        groups = None
        if self.method.channel_policy is not None:
            from prunekit.channels import channel_groups

            groups = channel_groups(self.supernet, self.example_inputs, policy=self.method.channel_policy)
        self.ctx = TrainContext(model=self.model, optimizer=None, steps_per_epoch=len(self.train_loader),
                                epochs=t.epochs, example_inputs=self.example_inputs, device=self.device,
                                train_batches=lambda: self.plain_train_loader.iterate(0), supernet=self.supernet,
                                groups=groups, plan=None, log=self._log, seed=t.seed)
        self._new_optimizer(None)
        self.ledger = TrainingCostLedger()
        start_epoch, step = 0, 0
        if self._resuming:
            start_epoch, step = self._restore()
        self.macs = count_macs(self.model, self.example_inputs)
        if t.tensorboard:
            self._open_tensorboard()
        initial = self.method.on_train_start(self.ctx)
        if initial is not None and start_epoch == 0:
            self._apply_decision(initial, -1)
        if start_epoch == 0:
            self._say(f"training {cfg.model.name} ({count_params(self.model):,} params, {self.macs / 1e6:.2f}M MACs) "
                      f"with {self.method.name} for {t.epochs} epochs on {self.device}; run dir {self.run_dir}")
        else:
            self._say(f"resuming {self.run_dir} at epoch {start_epoch + 1}/{t.epochs}")

        steps_per_epoch = len(self.train_loader)
        for epoch in range(start_epoch, t.epochs):
            self.ctx.epoch = epoch
            torch.manual_seed(derived_seed(t.seed, 0xE90C, epoch))  # dropout and other global-RNG users
            record, step = self._train_epoch(epoch, step, steps_per_epoch)
            self._log(record)
            self._say(f"epoch {epoch + 1}/{t.epochs}  loss {record['train_loss']:.4f}  "
                      f"train {100 * record['train_accuracy']:.2f}%  test {100 * record['test_accuracy']:.2f}%  "
                      f"{record['epoch_time_s']:.1f}s  {self.macs / 1e6:.2f}M MACs")
            if self.model is not self.supernet:
                from prunekit.channels import absorb

                absorb(self.model, self.supernet, self.plan, self.ctx.groups)
            decision = self.method.on_epoch_end(epoch, self.ctx)
            if decision is not None:
                self._apply_decision(decision, epoch)
            if (epoch + 1) % t.checkpoint_every == 0 or epoch + 1 == t.epochs:
                self._save_checkpoint(epoch + 1, step)
        return self._finish(data)

    def _train_epoch(self, epoch: int, step: int, steps_per_epoch: int) -> tuple[dict[str, Any], int]:
        t = self.cfg.train
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen, data_time = 0, 0.0
        bar = self._progress(steps_per_epoch, epoch)
        lr = 0.0
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
            set_learning_rate(self.optimizer, lr)
            with self._autocast():
                logits = self.model(images)
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=t.label_smoothing)
            total = loss + self.method.regularizer(self.model)
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.method.after_backward(self.model)
            self.optimizer.step()
            self.method.after_step(self.model)
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
        cost = self.ledger.record_epoch(epoch, self.macs, seen, epoch_time)
        test_loss, test_acc = self.evaluate(self.test_loader)
        record: dict[str, Any] = {
            "kind": "epoch", "epoch": epoch, "step": step, "lr": lr, "train_loss": train_loss,
            "train_accuracy": correct.item() / max(1, seen), "test_loss": test_loss, "test_accuracy": test_acc,
            "epoch_time_s": epoch_time, "data_time_s": data_time, "macs": self.macs,
            "params": count_params(self.model), "train_flops": cost["train_flops"],
        }
        if self.val_loader is not None:
            record["val_loss"], record["val_accuracy"] = self.evaluate(self.val_loader)
        return record, step

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, epoch: int, step: int) -> None:
        structured = self.model is not self.supernet
        data = ckpt.CheckpointData(
            epoch=epoch,
            model=self.model.state_dict(),
            optimizer=optimizer_state_by_name(self.optimizer, self.model),
            state={"step": step, "plan": self.plan.to_json() if self.plan is not None else None,
                   "method": self.method.state_dict(), "ledger": self.ledger.to_json()},
            supernet=self.supernet.state_dict() if structured else None,
            supernet_optimizer=self.bank_state if structured else None,
        )
        ckpt.save_checkpoint(self.run_dir / "checkpoints", data)

    def _restore(self) -> tuple[int, int]:
        data = ckpt.load_checkpoint(self.run_dir / "checkpoints")
        if data.state.get("plan") is not None:
            from prunekit.channels import ChannelPlan, materialize

            ckpt.load_state_strict(self.supernet, data.supernet or {}, "checkpoint supernet")
            self.plan = ChannelPlan.from_json(data.state["plan"])
            self.model = self._to_device(materialize(self.supernet, self.plan, self.ctx.groups))
            self.bank_state = data.supernet_optimizer or {}
        ckpt.load_state_strict(self.model, data.model, "checkpoint model")
        self._new_optimizer(data.optimizer)
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

    def _finish(self, data: DataSplits) -> dict[str, Any]:
        from prunekit.channels import ChannelPlan, save_pruned_model

        save_pruned_model(self.run_dir / "model", self.model, self.plan or ChannelPlan(),
                          self.spec, policy=self.method.channel_policy or "all")
        test_loss, test_acc = self.evaluate(self.test_loader)
        totals = self.ledger.totals()
        summary: dict[str, Any] = {
            "method": self.method.name, "model": self.cfg.model.name, "dataset": self.cfg.data.name,
            "epochs": self.cfg.train.epochs, "test_accuracy": test_acc, "test_loss": test_loss,
            "params": count_params(self.model), "macs": self.macs, "flops": 2 * self.macs,
            "dense_params": count_params(self.supernet),
            "dense_macs": count_macs(self.supernet, self.example_inputs),
            "train_time_s": totals["train_time_s"], "train_flops": totals["train_flops"],
        }
        if self.cfg.baseline_run:
            summary.update(compare_with_baseline(summary, Path(self.cfg.baseline_run)))
        io.write_json(self.run_dir / "summary.json", summary)
        if self.tb_writer is not None:
            self.tb_writer.close()
        return summary


def compare_with_baseline(summary: dict[str, Any], baseline_dir: Path) -> dict[str, float]:
    """Fractions of training FLOPs and training time saved against a dense run of the same preset."""
    base = io.read_json(baseline_dir / "summary.json")
    return {
        "train_flops_saved": 1.0 - summary["train_flops"] / base["train_flops"],
        "train_time_saved": 1.0 - summary["train_time_s"] / base["train_time_s"],
    }
