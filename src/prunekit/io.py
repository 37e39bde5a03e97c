"""Atomic file writes: write a temporary file beside the target, fsync, then rename over it.

A crash mid-write leaves the previous file intact. Tensors go to safetensors, everything else to JSON or YAML;
nothing here writes or reads pickle.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from prunekit.errors import UserError


def _atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)

    _atomic_write(path, write)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)

    _atomic_write(path, write)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_yaml(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append one JSON line (a single write call, flushed and fsynced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_json(path: str | os.PathLike[str]) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as exc:
        raise UserError(f"{path}: file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from exc


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read JSON lines. A half-written LAST line (a process killed mid-append) is dropped; a bad line
    elsewhere is a UserError."""
    with open(path, encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise UserError(f"{path}: line {number} is not valid JSON ({exc})") from exc
    return records


def save_tensors(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, str] | None = None) -> None:
    """Save a flat name -> tensor mapping as safetensors, atomically."""
    contiguous = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    _atomic_write(path, lambda tmp: save_file(contiguous, tmp, metadata=dict(metadata or {})))


def load_tensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a missing, truncated or corrupt file is a UserError."""
    if not os.path.exists(path):
        raise UserError(f"{path}: checkpoint file not found")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises SafetensorError / OSError / ValueError on corrupt input
        raise UserError(f"{path}: cannot read checkpoint, the file is truncated or corrupt ({exc})") from exc


MAX_DEPTH = 32  # nesting of JSON / YAML values a user file may hold
MAX_INT_DIGITS = 30  # integers in user files: far beyond any size, seed or count, far below Python's 4300


def check_plain_value(value: Any, where: str, depth: int = 0) -> None:
    """A one-line UserError unless `value` is plain data: None, bool, a finite number (an integer of at most
    MAX_INT_DIGITS digits), a string, or lists / string-keyed mappings of those, nested at most MAX_DEPTH deep."""
    if depth > MAX_DEPTH:
        raise UserError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) >= 10**MAX_INT_DIGITS:  # str() of a 4300-digit int would raise
            raise UserError(f"{where}: integer with more than {MAX_INT_DIGITS} digits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise UserError(f"{where}: {value!r} is not a finite number")
    elif isinstance(value, list | tuple):
        for item in value:
            check_plain_value(item, where, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UserError(f"{where}: mapping key {str(key)[:40]!r} is not a string")
            check_plain_value(item, f"{where}.{key}"[:200], depth + 1)
    else:
        raise UserError(f"{where}: unsupported value of type {type(value).__name__}")
