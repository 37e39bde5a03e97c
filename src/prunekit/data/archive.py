"""Reading files out of .tar / .tar.gz archives in memory (nothing is extracted to disk), and file hashing."""

from __future__ import annotations

import hashlib
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from prunekit.errors import UserError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
# Everything a damaged archive or compressed stream can raise while being read.
READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError, ValueError)


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (UserError messages are one line)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _archive_error(path: Path, exc: BaseException) -> UserError:
    return UserError(f"{path}: cannot read the archive, it is truncated or corrupt ({one_line(exc)})")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def iter_tar_files(path: Path, want: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """Yield (member name, content) for the regular files whose name `want` accepts, in archive order.

    Members are read as a stream; a truncated or corrupt archive is a UserError naming it.
    """
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for member in tar:
                if not member.isfile() or not want(member.name):
                    continue
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                yield member.name, handle.read()
    except READ_ERRORS as exc:
        raise _archive_error(path, exc) from exc


def first_tar_file(path: Path, want: Callable[[str], bool]) -> str | None:
    """Name of the first regular file `want` accepts, without reading the rest of the archive."""
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for member in tar:
                if member.isfile() and want(member.name):
                    return member.name
    except READ_ERRORS as exc:
        raise _archive_error(path, exc) from exc
    return None


def file_digest(path: Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's content."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
