"""Checkpoints of a run: safetensors for tensors, JSON for everything else, never pickle.

Layout inside `RUN_DIR/checkpoints/` (one directory per checkpoint, named by the global step):

    step-000000400/model.safetensors              the network being trained (the subnet once pruned)
    step-000000400/optimizer.safetensors          its optimizer state, keyed "param_name/state_key"
    step-000000400/supernet.safetensors           the full-width supernet (structured methods only)
    step-000000400/supernet_optimizer.safetensors the supernet's optimizer state (the MRU bank)
    step-000000400/<extra>.safetensors            further tensor maps: weight masks, the method's tensors and
                                                  its optimizer state, the RNG state of a mid-epoch checkpoint
    step-000000400/state.json                     epoch, step, plan, method state, ledger, scalar optimizer state
    latest.json                                   {"dir": "step-000000400", "epoch": 4, "step": 400}
    kept.json                                     {"500it": "step-000000500", ...}: checkpoints kept by name

Every checkpoint has a manifest (SHA-256 of each file), is read back before older ones are removed (the newest
two are kept), and is verified on resume; a corrupt newest checkpoint falls back to the previous one.
A checkpoint directory is complete before `latest.json` (written atomically) points at it, so an interrupted
write never replaces a good checkpoint; older directories are removed afterwards, except those kept by name
(`train.keep_checkpoints`), which a later run can rewind to (`load_checkpoint(root, name="500it")`).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
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
    step: int = 0  # optimizer steps taken (global)
    extra: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # name -> tensor map


RESERVED = {"model", "optimizer", "supernet", "supernet_optimizer"}
DIR_NAME = re.compile(r"step-\d{9}|epoch-\d{4}")  # what latest.json and kept.json may name (never a path)
MANIFEST = "manifest.json"  # {file name: SHA-256} of every other file of the checkpoint


def checkpoint_dir_name(step: int) -> str:
    return f"step-{step:09d}"


def save_checkpoint(root: Path, data: CheckpointData, keep_last: int = 2, keep_as: str | None = None) -> Path:
    """Write `data` as a new checkpoint, point latest.json at it, remove older ones (all but the newest
    `keep_last`, never those kept by name). `keep_as` keeps this one under that name."""
    root = Path(root)
    directory = root / checkpoint_dir_name(data.step)
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
    for name, tensors in data.extra.items():
        if name in RESERVED or not name.isidentifier():
            raise ValueError(f"checkpoint extra {name!r} is reserved or not a plain name")
        io.save_tensors(directory / f"{name}.safetensors", tensors)
    state["step"] = data.step
    io.write_json(directory / "state.json", state)
    io.write_json(directory / MANIFEST, {p.name: sha256_of(p) for p in sorted(directory.iterdir())
                                         if p.is_file() and p.name != MANIFEST})
    _read_directory(directory)  # it reloads before anything older is dropped
    kept = read_kept(root)
    if keep_as is not None:
        kept[keep_as] = directory.name
        io.write_json(root / "kept.json", kept)
    io.write_json(root / "latest.json", {"dir": directory.name, "epoch": data.epoch, "step": data.step})
    protected = set(kept.values()) | {directory.name}
    old = sorted(p for p in root.glob("step-*") if p.is_dir() and p.name not in protected)
    old += sorted(p for p in root.glob("epoch-*") if p.is_dir())  # the layout before step-named directories
    for stale in old[: max(0, len(old) - (keep_last - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return directory


def read_kept(root: Path) -> dict[str, str]:
    """Checkpoints kept by name: {name: directory}."""
    path = Path(root) / "kept.json"
    if not path.is_file():
        return {}
    kept = io.read_json(path)
    if not isinstance(kept, dict) or not all(isinstance(v, str) and DIR_NAME.fullmatch(v) for v in kept.values()):
        raise UserError(f"{path}: malformed list of kept checkpoints")
    return kept


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(directory: Path) -> None:
    """UserError unless every file of the checkpoint's manifest is present with its SHA-256 (a checkpoint written
    before manifests existed is accepted as it is)."""
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        return
    manifest = io.read_json(manifest_path)
    if not isinstance(manifest, dict):
        raise UserError(f"{manifest_path}: malformed manifest")
    for name, expected in manifest.items():
        path = directory / str(name)
        if "/" in str(name) or not path.is_file():
            raise UserError(f"{directory}: {name} is missing")
        if sha256_of(path) != expected:
            raise UserError(f"{path}: checksum mismatch (the file was corrupted after it was written)")


def load_checkpoint(root: Path, name: str | None = None) -> CheckpointData:
    """Read the checkpoint `latest.json` names (or the one kept as `name`), verified against its manifest.

    When the newest checkpoint is missing or corrupt, the newest older one that verifies is used instead (with a
    warning on stderr); with none, a UserError."""
    root = Path(root)
    if name is not None:
        kept = read_kept(root)
        if name not in kept:
            raise UserError(f"{root}: no checkpoint kept as {name!r} (kept: {', '.join(sorted(kept)) or 'none'})")
        return _read_directory(root / kept[name])
    latest = root / "latest.json"
    if not latest.is_file():
        raise UserError(f"{root}: no checkpoint to resume from (latest.json missing)")
    pointer = io.read_json(latest)
    if not isinstance(pointer, dict) or not DIR_NAME.fullmatch(str(pointer.get("dir"))):
        raise UserError(f"{latest}: malformed checkpoint pointer")
    newest = root / pointer["dir"]
    try:
        return _read_directory(newest)
    except UserError as problem:
        older = sorted((p for p in root.glob("step-*") if p.is_dir() and p.name < newest.name), reverse=True)
        for candidate in older:
            try:
                data = _read_directory(candidate)
            except UserError:
                continue
            print(f"prunekit: warning: {problem}; resuming from the previous checkpoint {candidate.name}",
                  file=sys.stderr)
            return data
        raise


def _read_directory(directory: Path) -> CheckpointData:
    verify(directory)
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
    extra = {path.stem: io.load_tensors(path) for path in sorted(directory.glob("*.safetensors"))
             if path.stem not in RESERVED}
    try:
        epoch, step = int(state["epoch"]), int(state.get("step", 0))
    except (TypeError, ValueError):
        raise UserError(f"{directory / 'state.json'}: epoch and step must be integers") from None
    if epoch < 0 or step < 0:
        raise UserError(f"{directory / 'state.json'}: negative epoch or step")
    return CheckpointData(epoch=epoch, model=model, optimizer=optimizer, state=state, supernet=supernet,
                          supernet_optimizer=supernet_optimizer, step=step, extra=extra)


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
