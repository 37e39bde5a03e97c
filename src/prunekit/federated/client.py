"""One client's round (research note 6.3): reset to the global weights and mask, a fresh optimizer, E local
epochs on its partition with the mask kept by `SupernetState`, and on readjustment rounds one drop/grow update
(`Readjust`, a Method returning a mask Decision, so the state zeroes the new weights and their optimizer state).

Data: every client (and the server) loads the same dataset and computes the same seeded partition; client i
trains on partition i (`partition-id` of its Flower node). Normalisation uses the whole training split's mean and
std (a real deployment would use per-client or agreed statistics; a simplification).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.config import RunConfig, ScheduleConfig
from prunekit.data import BatchLoader, DataSplits, ImageDataset, load_data
from prunekit.data.partition import Partition, partition
from prunekit.errors import UserError
from prunekit.federated.aggregate import Arrays, join_masks, split_masks
from prunekit.federated.config import FederatedConfig
from prunekit.federated.topology import drop_and_grow, readjust_step
from prunekit.methods.base import Decision, Method, TrainContext
from prunekit.models import create_model
from prunekit.seeding import derived_seed
from prunekit.train.checkpoint import load_state_strict
from prunekit.train.loop import LoopHooks, TrainingLoop, evaluate
from prunekit.train.optim import build_optimizer
from prunekit.train.schedules import learning_rate
from prunekit.train.supernet import SupernetState
from prunekit.weights import WeightMasks
from prunekit.weights.dst import connections_changed

CLIENT_DATA_SEED = 0xC11E


@dataclass
class FederatedData:
    splits: DataSplits
    part: Partition

    def client(self, i: int) -> tuple[ImageDataset, ImageDataset]:
        if not 0 <= i < len(self.part):
            raise UserError(f"partition-id {i} is outside the {len(self.part)} non-empty client partitions")
        return self.splits.train.select(self.part.train[i]), self.splits.test.select(self.part.test[i])


@functools.lru_cache(maxsize=4)
def _load(data_json: str, clients: int, scheme: str, beta: float, seed: int, min_samples: int) -> FederatedData:
    from prunekit.config import DataConfig, build_dataclass

    splits = load_data(build_dataclass(DataConfig, json.loads(data_json), prefix="data."))
    part = partition(splits.train.labels.numpy(), splits.test.labels.numpy(), clients, scheme, beta, seed,
                     min_samples)
    return FederatedData(splits, part)


def federated_data(cfg: RunConfig, fed: FederatedConfig) -> FederatedData:
    """The dataset and its client partition (cached per process: Flower calls a ClientApp once per round)."""
    return _load(json.dumps(cfg.to_dict()["data"], sort_keys=True), fed.clients, fed.partition, fed.beta,
                 fed.partition_seed, fed.min_samples)


def build_model(cfg: RunConfig, splits: DataSplits) -> nn.Module:
    c = splits.train.shape[0]
    return create_model(cfg.model.name, num_classes=splits.num_classes, in_channels=c, **cfg.model.kwargs)


def load_arrays(model: nn.Module, weights: Arrays) -> None:
    load_state_strict(model, {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, "global weights")


def model_arrays(model: nn.Module, masks: WeightMasks | None) -> Arrays:
    weights = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
    return join_masks(weights, {k: v.cpu().numpy() for k, v in (masks or {}).items()})


class Readjust(Method):
    """Drop floor(ratio * active) smallest |w| and grow as many largest |dense gradient| (summed over the
    `grad_batches` steps up to `at_step`) among inactive positions, after local step `at_step`."""

    name = "feddst_readjust"

    def __init__(self, ratio: float, at_step: int, grad_batches: int) -> None:
        self.ratio, self.at_step, self.grad_batches = ratio, at_step, grad_batches
        self.grads: dict[str, torch.Tensor] = {}
        self.ctx: TrainContext | None = None
        self.changed = 0

    def on_train_start(self, ctx: TrainContext) -> Decision | None:
        self.ctx = ctx
        return None

    def after_backward(self, model: nn.Module) -> None:
        assert self.ctx is not None and self.ctx.model_masks is not None
        step = self.ctx.step + 1  # the number of the step being taken
        if not self.at_step - self.grad_batches < step <= self.at_step:
            return
        for name, p in model.named_parameters():
            if name in self.ctx.model_masks and p.grad is not None:
                g = p.grad.detach()
                self.grads[name] = self.grads[name] + g if name in self.grads else g.clone()

    def on_step_end(self, step: int, ctx: TrainContext) -> Decision | None:
        if step != self.at_step or ctx.model_masks is None:
            return None
        params = dict(ctx.model.named_parameters())
        new = {name: drop_and_grow(params[name], mask, self.grads[name], self.ratio)
               for name, mask in ctx.model_masks.items()}
        self.changed = sum(connections_changed(ctx.model_masks[n], m) for n, m in new.items())
        self.grads = {}
        return Decision(masks=new, info={"readjust_ratio": self.ratio, "connections_changed": self.changed})


class _Stats(LoopHooks):
    def __init__(self) -> None:
        self.last: dict[str, Any] = {}

    def on_epoch_trained(self, loop: TrainingLoop, stats: dict[str, Any]) -> None:
        self.last = stats


def local_train(cfg: RunConfig, fed: FederatedConfig, train: ImageDataset, splits: DataSplits, arrays: Arrays,
                server_round: int, ratio: float, client_id: int) -> tuple[Arrays, dict[str, float]]:
    """Train one client for `fed.local_epochs` from the global `arrays`; returns (arrays, metrics)."""
    torch.set_num_threads(cfg.train.threads or 1)
    weights, masks = split_masks(arrays)
    model = build_model(cfg, splits)
    load_arrays(model, weights)
    c, h, w = splits.train.shape
    d, t = cfg.data, cfg.train
    loader = BatchLoader(train, t.batch_size, mean=splits.mean, std=splits.std, shuffle=True, augment=d.augment,
                         crop_padding=d.crop_padding, flip=d.flip, normalize=d.normalize,
                         seed=derived_seed(t.seed, CLIENT_DATA_SEED, server_round, client_id))
    steps = len(loader)
    method: Method = (Readjust(ratio, readjust_step(steps, fed.local_epochs), fed.grad_batches)
                      if ratio > 0 and masks else Method())
    state = SupernetState(model, torch.zeros(2, c, h, w), None, make_optimizer=lambda m: build_optimizer(m, cfg.optim),
                          method=method)
    if masks:
        state.set_masks(WeightMasks({k: torch.from_numpy(v) for k, v in masks.items()}))
    ctx = state.context(steps_per_epoch=steps, epochs=fed.local_epochs, seed=t.seed)
    method.on_train_start(ctx)
    lr = learning_rate(server_round - 1, 1, fed.rounds, cfg.optim.lr, cfg.schedule)  # the schedule runs over rounds
    stats = _Stats()
    TrainingLoop(state, method, ctx, loader, epochs=fed.local_epochs, lr=lr, schedule=ScheduleConfig(name="constant"),
                 label_smoothing=t.label_smoothing, seed=derived_seed(t.seed, server_round, client_id),
                 hooks=stats).run()
    metrics = {"num-examples": len(train), "train_loss": float(stats.last.get("train_loss", 0.0)),
               "train_accuracy": float(stats.last.get("train_accuracy", 0.0)),
               "connections_changed": float(getattr(method, "changed", 0))}
    return model_arrays(state.model, state.masks), metrics


def evaluate_arrays(cfg: RunConfig, splits: DataSplits, data: ImageDataset, arrays: Arrays) -> tuple[float, float]:
    """(loss, accuracy) of the model in `arrays` on `data`."""
    model = build_model(cfg, splits)
    load_arrays(model, split_masks(arrays)[0])
    loader = BatchLoader(data, cfg.train.eval_batch_size, mean=splits.mean, std=splits.std, shuffle=False,
                         augment=False, normalize=cfg.data.normalize)
    return evaluate(model, loader)
