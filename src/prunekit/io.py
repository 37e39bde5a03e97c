"""Atomic file writes and bounded reads.

Writes: a temporary file beside the target, fsync, rename over it, fsync of the directory, so a crash leaves
either the previous file or the new one, and the rename itself survives a power cut. Files get the user's
usual permissions (0666 minus the umask), like any file they create. Tensors go to safetensors (each written
file is parsed back before it replaces anything), everything else to JSON or YAML; nothing here writes or reads
pickle.

Reads: a missing, non-UTF-8, oversized, too deeply nested or malformed file is a one-line UserError, and YAML
aliases may not expand a document beyond a fixed number of nodes (an "anchor bomb").
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from prunekit.errors import UserError

MAX_DEPTH = 32  # nesting of JSON / YAML values a user file may hold
MAX_INT_DIGITS = 30  # integers in user values: far beyond any size, seed or count, far below Python's 4300
MAX_JSON_BYTES = 256 << 20  # state.json, pruned.json, summaries: a few MB at most in practice
MAX_YAML_BYTES = 1 << 20  # configs are a few kB
MAX_YAML_NODES = 100_000  # scalars + collections of a YAML document once its aliases are expanded
# errno values of a full or unwritable disk: an environment failure the user can fix, not a bug
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


class StorageError(UserError):
    """A write failed because of the file system (disk full, read-only, no permission): one line naming the path.
    The file being replaced, if any, is left as it was."""

    def __init__(self, path: str | os.PathLike[str], error: OSError) -> None:
        self.path, self.errno = Path(path), error.errno
        super().__init__(f"cannot write {path}: {error.strerror or error}")


def _temporary(path: Path) -> str:
    """Create an empty temporary file beside `path` with mode 0666 & ~umask and return its name."""
    while True:
        tmp = path.parent / f".{path.name[:180]}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return str(tmp)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """fsync a directory so that renames and creations in it are durable (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a directory
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temporary(path)
        wanted = os.stat(tmp).st_mode & 0o777  # 0666 & ~umask, as the kernel applied it
        write(tmp)
        if os.stat(tmp).st_mode & 0o777 != wanted:  # safetensors replaces the file with an owner-only one
            os.chmod(tmp, wanted)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_directory(path.parent)
    except OSError as error:
        if error.errno in STORAGE_ERRNOS:
            raise StorageError(path, error) from error
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)

    _atomic_write(path, write)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_yaml(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append one JSON line (a single write call, flushed and fsynced)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        if error.errno in STORAGE_ERRNOS:
            raise StorageError(path, error) from error
        raise


# ---------------------------------------------------------------------------------------------- reading


def read_text(path: str | os.PathLike[str], max_bytes: int, what: str = "file") -> str:
    """The UTF-8 text of `path`; missing, unreadable, larger than `max_bytes` or not UTF-8: a UserError."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise UserError(f"{path}: {what} not found") from exc
    except IsADirectoryError as exc:
        raise UserError(f"{path}: is a directory, expected a {what}") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if len(data) > max_bytes:
        raise UserError(f"{path}: larger than {max_bytes:,} bytes, not a {what} prunekit wrote")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})") from exc


def nesting_depth(value: Any) -> int:
    """Depth of nested lists / tuples / dicts in `value` (a scalar is 0), without recursion; shared children are
    visited once, cycles count as too deep."""
    depth, stack, seen = 0, [(value, 0)], set()
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list | tuple):
            if id(item) in seen:
                continue
            seen.add(id(item))
            level += 1
            if level > 10 * MAX_DEPTH:
                return level
            depth = max(depth, level)
            stack.extend((child, level) for child in (item.values() if isinstance(item, dict) else item))
    return depth


def loads_json(text: str, where: str, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads with one-line UserErrors: syntax, integers over Python's digit limit, nesting over `max_depth`."""
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise UserError(f"{where}: JSON nested more than {max_depth} levels deep") from exc
    except ValueError as exc:  # JSONDecodeError, and int() over 4300 digits
        raise UserError(f"{where}: not valid JSON ({str(exc)[:200]})") from exc
    if nesting_depth(value) > max_depth:
        raise UserError(f"{where}: JSON nested more than {max_depth} levels deep")
    return value


def read_json(path: str | os.PathLike[str], max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    return loads_json(read_text(path, max_bytes, "JSON file"), str(path), max_depth)


def read_jsonl(path: str | os.PathLike[str], max_bytes: int = 4 * MAX_JSON_BYTES) -> list[dict[str, Any]]:
    """Read JSON lines. A half-written LAST line (a process killed mid-append) is dropped; a bad line
    elsewhere is a UserError."""
    lines = [line for line in read_text(path, max_bytes, "JSON-lines file").split("\n") if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(loads_json(line, f"{path}: line {number}"))
        except UserError:
            if number == len(lines):
                break
            raise
    return records


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, composing the whole node graph first so it can be measured before construction."""


def _expanded_size(root: yaml.Node, where: str) -> int:
    """Number of nodes of the document once its aliases are expanded, and its depth checked; both bounded.

    Iterative post-order over the node graph with a memo per node, so a billion-laughs document costs time
    proportional to its distinct nodes, not to its expansion."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool, int]] = [(root, False, 1)]
    while stack:
        node, done, depth = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            sizes[key] = min(1 + sum(sizes[id(c)] for c in children), MAX_YAML_NODES + 1)
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise UserError(f"{where}: YAML alias refers to itself (a recursive structure)")
        if depth > MAX_DEPTH:
            raise UserError(f"{where}: YAML nested more than {MAX_DEPTH} levels deep")
        on_path.add(key)
        stack.append((node, True, depth))
        stack.extend((child, False, depth + 1) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def loads_yaml(text: str, where: str) -> Any:
    """yaml.safe_load with one-line UserErrors for syntax errors, nesting over MAX_DEPTH, documents whose aliases
    expand past MAX_YAML_NODES nodes, recursive aliases and unconstructible scalars (integers over Python's
    4300-digit limit, impossible dates)."""
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader refuses control characters here already
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, where) > MAX_YAML_NODES:
            raise UserError(f"{where}: YAML expands to more than {MAX_YAML_NODES:,} values (aliases of aliases?)")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise UserError(f"{where}: not valid YAML ({first})") from exc
    except RecursionError as exc:
        raise UserError(f"{where}: YAML nested more than {MAX_DEPTH} levels deep") from exc
    except (ValueError, OverflowError) as exc:
        raise UserError(f"{where}: YAML value cannot be read ({str(exc)[:200]})") from exc
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: str | os.PathLike[str], max_bytes: int = MAX_YAML_BYTES) -> Any:
    return loads_yaml(read_text(path, max_bytes, "YAML file"), str(path))


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


# ---------------------------------------------------------------------------------------------- tensors


def _save_and_check(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None, tmp: str) -> None:
    # metadata=None, never {}: safetensors 0.8 writes an unreadable header for an empty map with metadata={}
    try:
        save_file(tensors, tmp, metadata=metadata or None)
    except Exception as exc:  # SafetensorError "I/O error: No space left on device (os error 28)"
        found = re.search(r"os error (\d+)", str(exc))
        if found is None:
            raise
        raise OSError(int(found.group(1)), os.strerror(int(found.group(1)))) from exc
    with safe_open(tmp, framework="pt") as handle:  # parse the header back: every file written can be read
        if set(handle.keys()) != set(tensors):
            raise OSError(errno.EIO, f"safetensors wrote {tmp} with other tensors than given")


def save_tensors(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, str] | None = None) -> None:
    """Save a flat name -> tensor mapping as safetensors, atomically (an empty mapping included)."""
    contiguous = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    _atomic_write(path, lambda tmp: _save_and_check(contiguous, dict(metadata or {}), tmp))


def load_tensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a missing, truncated or corrupt file is a UserError."""
    if not os.path.exists(path):
        raise UserError(f"{path}: checkpoint file not found")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises SafetensorError / OSError / ValueError on corrupt input
        raise UserError(f"{path}: cannot read checkpoint, the file is truncated or corrupt "
                        f"({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from exc
