"""Run-directory housekeeping: one process per run directory, stale temporary files, restartable runs, and
output paths checked before anything is written.

    with lock_run_dir(run_dir):          # a second process on the same directory gets a one-line UserError
        clean_stale_temp_files(run_dir)  # only safe while the lock is held
        if has_no_checkpoint(run_dir):   # nothing to resume from: the run may start again in place
            clear_for_restart(run_dir)

The lock is `fcntl.flock` on RUN/.lock: the kernel drops it when the holding process dies (kill -9 included),
so a crashed run never leaves a stale lock behind. The lock file itself stays; it holds the last holder's pid.
"""

from __future__ import annotations

import errno
import os
import shutil
import warnings
from pathlib import Path
from types import TracebackType

from prunekit.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked there
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
TEMP_SUFFIX = ".tmp"  # prunekit.io writes `.NAME.XXXX.tmp` beside NAME and renames it over NAME
# What a run directory holds before its first checkpoint; such a directory may be started again in place.
PRE_CHECKPOINT_ENTRIES = frozenset({LOCK_NAME, "config.yaml", "metrics.jsonl", "tensorboard", "checkpoints"})


class RunLock:
    """An exclusive, non-blocking lock on a run directory (see `lock_run_dir`)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        check_output_dir(self.run_dir, "run directory")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        if fcntl is None:
            os.close(fd)
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_pid(fd)
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f" (pid {holder})" if holder else ""
                raise UserError(f"run directory {self.run_dir} is in use by another prunekit process{who}; "
                                "wait for it to finish or choose another --out") from None
            warnings.warn(f"{self.path}: cannot lock ({error.strerror}); two processes could write this run "
                          "directory at once", RuntimeWarning, stacklevel=2)
            return self
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self if self.held else self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def lock_run_dir(run_dir: str | os.PathLike[str]) -> RunLock:
    """Take the exclusive lock on `run_dir` (created if missing) and return it; release it with `.release()` or
    use it as a context manager. Another process holding it: a one-line UserError naming its pid."""
    return RunLock(run_dir).acquire()


def clean_stale_temp_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Remove the `*.tmp` files a killed process left in `run_dir` (any depth) and return them.

    Call it only while holding the run's lock: another process's temporary file is not stale."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    removed = []
    for path in sorted(run_dir.rglob(f"*{TEMP_SUFFIX}")):
        if path.is_file() or path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def has_checkpoint(run_dir: str | os.PathLike[str]) -> bool:
    """True when `run_dir` holds a checkpoint pointer (checkpoints/latest.json), i.e. `--resume` has something to
    continue from."""
    return (Path(run_dir) / "checkpoints" / "latest.json").is_file()


def has_no_checkpoint(run_dir: str | os.PathLike[str]) -> bool:
    """True when `run_dir` is a run that died before its first checkpoint: it holds nothing but what a run writes
    before then (config.yaml, metrics.jsonl, tensorboard/, the lock, temporary files, a checkpoints/ folder
    without latest.json) and no final model. Such a run can be started again in place, from scratch."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or has_checkpoint(run_dir):
        return False
    names = {p.name for p in run_dir.iterdir() if not p.name.endswith(TEMP_SUFFIX)}
    return names <= PRE_CHECKPOINT_ENTRIES


def clear_for_restart(run_dir: str | os.PathLike[str]) -> list[str]:
    """Empty a run that `has_no_checkpoint` so it can start again from scratch in place: remove what it wrote
    (config.yaml, metrics.jsonl, tensorboard/, checkpoints/, temporary files), keep the lock; return the names
    removed. Refuses (UserError) a directory that holds a checkpoint, a final model or files prunekit did not
    write. Call it while holding the lock."""
    run_dir = Path(run_dir)
    if not has_no_checkpoint(run_dir):
        raise UserError(f"{run_dir} holds a checkpoint, a finished run or other files; it is not restarted in place")
    removed = []
    for path in sorted(run_dir.iterdir()):
        if path.name == LOCK_NAME:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path.name)
    return removed


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def _check_ancestors(path: Path, what: str) -> None:
    """The nearest existing ancestor of `path` must be a writable directory."""
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise UserError(f"{what} {path}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: cannot create it, {ancestor} {_not_writable(ancestor)}")


def _not_writable(path: Path) -> str:
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "is on a Read-only file system"
    except OSError:
        pass
    return "is not writable"


def check_output_dir(path: str | os.PathLike[str], what: str = "--out") -> None:
    """A one-line UserError unless `path` is an existing directory or can be created as one (no part of it is a
    file, its nearest existing ancestor is writable)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a directory")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"{what} {path} {_not_writable(path)}")
        return
    _check_ancestors(path, what)


def check_output_file(path: str | os.PathLike[str], what: str = "output file") -> None:
    """A one-line UserError unless `path` names a file that can be written: not a directory, not ending in a
    separator, in a directory that exists or can be created and is writable."""
    text = os.fspath(path)
    path = Path(text)
    if not text or text.endswith(os.sep) or path.name in ("", ".", ".."):
        raise UserError(f"{what} {text!r} must name a file, not a directory")
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; give a file name, e.g. {path / 'model.onnx'}")
    _check_ancestors(path, what)
