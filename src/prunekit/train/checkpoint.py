"""Checkpoints of a run: safetensors for tensors, JSON for everything else, never pickle.

Layout inside `RUN_DIR/checkpoints/`:

    epoch-0004/model.safetensors              the network being trained (the subnet once pruned)
    epoch-0004/optimizer.safetensors          its optimizer state, keyed "param_name/state_key"
    epoch-0004/supernet.safetensors           the full-width supernet (structured methods only)
    epoch-0004/supernet_optimizer.safetensors the supernet's optimizer state (the MRU bank)
    epoch-0004/state.json                     epoch, step, plan, method state, ledger, scalar optimizer state
    latest.json                               {"dir": "epoch-0004", "epoch": 4}

A checkpoint directory is complete before `latest.json` (written atomically) points at it, so an interrupted
write never replaces a good checkpoint; older directories are removed afterwards.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from prunekit import io
from prunekit.errors import UserError
from prunekit.train.optim import OptimizerState, flatten_optimizer_state, unflatten_optimizer_state


@dataclass
class CheckpointData:
    epoch: int  # number of completed epochs
    model: dict[str, torch.Tensor]
    optimizer: OptimizerState
    state: dict[str, Any] = field(default_factory=dict)
    supernet: dict[str, torch.Tensor] | None = None
    supernet_optimizer: OptimizerState | None = None


def save_checkpoint(root: Path, data: CheckpointData, keep_last: int = 1) -> Path:
    root = Path(root)
    directory = root / f"epoch-{data.epoch:04d}"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    io.save_tensors(directory / "model.safetensors", data.model)
    opt_tensors, opt_scalars = flatten_optimizer_state(data.optimizer)
    io.save_tensors(directory / "optimizer.safetensors", opt_tensors)
    state = dict(data.state, epoch=data.epoch, optimizer_scalars=opt_scalars)
    if data.supernet is not None:
        io.save_tensors(directory / "supernet.safetensors", data.supernet)
        sup_tensors, sup_scalars = flatten_optimizer_state(data.supernet_optimizer or {})
        io.save_tensors(directory / "supernet_optimizer.safetensors", sup_tensors)
        state["supernet_optimizer_scalars"] = sup_scalars
    io.write_json(directory / "state.json", state)
    io.write_json(root / "latest.json", {"dir": directory.name, "epoch": data.epoch})
    old = sorted(p for p in root.glob("epoch-*") if p.is_dir() and p != directory)
    for stale in old[: max(0, len(old) - (keep_last - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return directory


def load_checkpoint(root: Path) -> CheckpointData:
    """Read the checkpoint `latest.json` names; anything missing or corrupt is a UserError."""
    root = Path(root)
    latest = root / "latest.json"
    if not latest.is_file():
        raise UserError(f"{root}: no checkpoint to resume from (latest.json missing)")
    pointer = io.read_json(latest)
    if not isinstance(pointer, dict) or "dir" not in pointer:
        raise UserError(f"{latest}: malformed checkpoint pointer")
    directory = root / str(pointer["dir"])
    state = io.read_json(directory / "state.json")
    if not isinstance(state, dict) or "epoch" not in state:
        raise UserError(f"{directory / 'state.json'}: malformed checkpoint state")
    model = io.load_tensors(directory / "model.safetensors")
    optimizer = unflatten_optimizer_state(io.load_tensors(directory / "optimizer.safetensors"),
                                          state.pop("optimizer_scalars", {}))
    supernet = supernet_optimizer = None
    if (directory / "supernet.safetensors").exists():
        supernet = io.load_tensors(directory / "supernet.safetensors")
        supernet_optimizer = unflatten_optimizer_state(
            io.load_tensors(directory / "supernet_optimizer.safetensors"),
            state.pop("supernet_optimizer_scalars", {}))
    return CheckpointData(epoch=int(state["epoch"]), model=model, optimizer=optimizer, state=state,
                          supernet=supernet, supernet_optimizer=supernet_optimizer)


def load_state_strict(module: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict that reports a mismatch as a UserError (a checkpoint from another model or plan)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise UserError(f"{what} does not match the model ({len(missing)} missing, {len(unexpected)} unexpected, "
                        f"{len(wrong)} wrong-shape tensors; first: {first!r})")
    module.load_state_dict(tensors)
