"""Multi-process training (`torchrun --nproc_per_node=N -m prunekit train CONFIG`, or `prunekit train --nproc N`).

What is synchronised, and how:
- data: every process iterates the same global batches (same seed) and takes positions rank, rank + N, ... of
  each (`BatchLoader.rank/world`), so the global batch order is that of one process;
- gradients: the trained module runs inside DistributedDataParallel, which all-reduces (averages) gradients
  during backward; methods see the all-reduced dense gradient in `after_backward` (RigL's |sum g| rule);
- decisions: every process asks its method (so method state advances alike), then all take rank 0's decision,
  broadcast as JSON plus mask tensors, and check the plan's hash before materialising; the new subnet is
  re-wrapped in a new DDP with a new optimizer carrying the sliced state (`SupernetState.wrap`);
- evaluation: each process evaluates its shard of the test set and the sums are all-reduced;
- files: only rank 0 writes metrics, checkpoints and the summary; every process resumes from the same checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from prunekit.channels import ChannelPlan
from prunekit.data import BatchLoader
from prunekit.methods.base import Decision


@dataclass
class Distributed:
    """This process's place in a torchrun job."""

    rank: int
    world: int
    local_rank: int

    @classmethod
    def from_env(cls) -> Distributed | None:
        """The job torchrun describes in the environment, or None for a single process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        return cls(rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: torch.device) -> torch.device:
        return torch.device("cuda", self.local_rank) if requested.type == "cuda" else requested

    def start(self, device: torch.device) -> None:
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend=backend)

    def stop(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        dist.barrier()

    def shard(self, loader: BatchLoader) -> BatchLoader:
        loader.rank, loader.world = self.rank, self.world
        return loader

    def wrap(self, model: nn.Module) -> nn.Module:
        ids = [self.local_rank] if next(model.parameters()).is_cuda else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    # ------------------------------------------------------------------ decisions
    def agree(self, decision: Decision | None) -> Decision | None:
        """Rank 0's decision, on every process (each has asked its own method first)."""
        payload = _encode(decision) if self.is_main else b""
        payload = self._broadcast_bytes(payload)
        message = json.loads(payload.decode())
        if not message["has"]:
            return None
        masks = None
        if message["masks"] is not None:
            masks = {}
            for name, shape in message["masks"]:
                tensor = (decision.masks[name].to("cpu", torch.uint8) if self.is_main
                          else torch.empty(shape, dtype=torch.uint8))
                dist.broadcast(tensor, src=0)
                masks[name] = tensor.bool()
        plan = ChannelPlan.from_json(message["plan"]) if message["plan"] is not None else None
        if plan is not None and plan_digest(plan) != message["plan_digest"]:
            raise RuntimeError("the channel plan received from rank 0 does not match its hash")
        if not self.is_main and decision is not None and decision.plan is not None and plan is not None \
                and plan_digest(decision.plan) != message["plan_digest"]:
            print(f"prunekit: rank {self.rank}: own plan differs from rank 0's; using rank 0's", file=sys.stderr)
        return Decision(plan=plan, masks=masks, info=message["info"])

    def _broadcast_bytes(self, data: bytes) -> bytes:
        size = torch.tensor([len(data)], dtype=torch.long)
        dist.broadcast(size, src=0)
        buffer = (torch.frombuffer(bytearray(data), dtype=torch.uint8) if self.is_main
                  else torch.empty(int(size.item()), dtype=torch.uint8))
        if buffer.numel():
            dist.broadcast(buffer, src=0)
        return bytes(buffer.tolist()) if not self.is_main else data

    @torch.no_grad()
    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BN running statistics) on every process: DDP broadcasts them before each training
        forward, but the last forward leaves each process with statistics of its own shard."""
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)

    # ------------------------------------------------------------------ evaluation and checks
    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: BatchLoader, amp: bool) -> tuple[float, float]:
        """(mean loss, accuracy) over the whole set: each process its shard, sums all-reduced."""
        from prunekit.train.loop import autocast

        was_training = model.training
        model.eval()
        sums = torch.zeros(3, dtype=torch.float64)
        for images, labels in loader.iterate(0):
            with autocast(amp, loader.device):
                logits = model(images)
            sums[0] += F.cross_entropy(logits.float(), labels, reduction="sum").item()
            sums[1] += (logits.argmax(1) == labels).sum().item()
            sums[2] += labels.numel()
        model.train(was_training)
        dist.all_reduce(sums)
        count = max(1.0, sums[2].item())
        return sums[0].item() / count, sums[1].item() / count

    def replicas_identical(self, model: nn.Module, plan: ChannelPlan | None) -> bool:
        """Whether every process holds bitwise the same weights, buffers and plan."""
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        digest.update(plan_digest(plan).encode())
        mine = torch.frombuffer(bytearray(digest.digest()), dtype=torch.uint8).clone()
        gathered = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(gathered, mine)
        return all(torch.equal(g, gathered[0]) for g in gathered)


def plan_digest(plan: ChannelPlan | None) -> str:
    text = json.dumps(plan.to_json() if plan is not None else None, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _encode(decision: Decision | None) -> bytes:
    message: dict[str, Any] = {"has": decision is not None, "plan": None, "plan_digest": None, "masks": None,
                               "info": {}}
    if decision is not None:
        if decision.plan is not None:
            message["plan"] = decision.plan.to_json()
            message["plan_digest"] = plan_digest(decision.plan)
        if decision.masks is not None:
            message["masks"] = [[name, list(decision.masks[name].shape)] for name in sorted(decision.masks)]
        message["info"] = decision.info
    return json.dumps(message, default=_jsonable).encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"decision info value of type {type(value).__name__} is not JSON")
