"""Image-folder trees `split/class/*.jpg|png` (splits train, test and optionally val), as a directory or a
.tar/.tar.gz archive. Images are decoded once with Pillow and cached as uint8 tensors (safetensors) keyed by
the content hash of the archive, or, for a directory, by a hash of its file list with sizes and mtimes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from safetensors import safe_open

from prunekit.data.archive import file_digest, is_archive, iter_tar_files, one_line
from prunekit.data.dataset import ImageDataset
from prunekit.errors import UserError
from prunekit.io import save_tensors

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SPLITS = ("train", "val", "test")
CACHE_FORMAT = "prunekit-imagefolder-1"


@dataclass(frozen=True)
class ImageEntry:
    """One image file's place in the tree: <prefix>/<split>/<class>/<name>."""

    prefix: str
    split: str
    cls: str
    name: str


def parse_entry(relative: str) -> ImageEntry | None:
    """Where a file sits in the split/class tree; None for files that are not images of the tree."""
    parts = [p for p in relative.replace("\\", "/").split("/") if p not in ("", ".")]
    if len(parts) < 3 or not parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return None
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    if parts[-3] not in SPLITS:
        return None
    return ImageEntry("/".join(parts[:-3]), parts[-3], parts[-2], parts[-1])


def is_imagefolder_member(name: str) -> bool:
    return parse_entry(name) is not None


def default_cache_dir(cache_dir: str | None) -> Path:
    """`cache_dir`, else env PRUNEKIT_CACHE, else ~/.cache/prunekit."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("PRUNEKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prunekit"


def source_key(path: Path) -> str:
    """sha256 of an archive's bytes; for a directory, of its sorted relative paths, sizes and mtimes."""
    if path.is_file():
        return file_digest(path, "sha256")
    digest = hashlib.sha256()
    records = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in files:
            full = Path(root) / name
            stat = full.stat()
            records.append(f"{full.relative_to(path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n")
    for record in sorted(records):
        digest.update(record.encode("utf-8"))
    return digest.hexdigest()


def _decode(content: bytes, source: str) -> np.ndarray:
    """Decode one image to uint8 H x W (grey) or H x W x 3 (colour)."""
    try:
        with Image.open(io.BytesIO(content)) as image:
            if image.mode not in ("L", "RGB"):
                image = image.convert("L" if image.mode in ("1", "LA", "I", "I;16", "F") else "RGB")
            return np.asarray(image, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UserError(f"{source}: cannot decode image ({one_line(exc)})") from exc


def _iter_files(path: Path):
    """(relative name, content, display name) of every image file of the tree, directory or archive."""
    if is_archive(path):
        for name, content in iter_tar_files(path, is_imagefolder_member):
            yield name, content, f"{path}:{name}"
        return
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = Path(root) / name
            relative = full.relative_to(path).as_posix()
            if parse_entry(relative) is not None:
                yield relative, full.read_bytes(), str(full)


def _check_empty_class_dirs(path: Path) -> None:
    """In a directory tree, a class folder without images is a mistake (it would shift every label)."""
    if is_archive(path):
        return
    for split_dir in [path / s for s in SPLITS if (path / s).is_dir()]:
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not any(f.suffix.lower() in IMAGE_SUFFIXES for f in class_dir.iterdir()):
                raise UserError(f"{class_dir}: class folder has no images")


def decode_tree(path: Path) -> dict[str, ImageDataset]:
    """Decode every image of the tree: split name -> dataset, classes = sorted class folder names of train."""
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if not path.is_dir() and not is_archive(path):
        raise UserError(f"{path}: expected a directory or a .tar/.tar.gz archive of split/class/image files")
    _check_empty_class_dirs(path)
    decoded: list[tuple[ImageEntry, np.ndarray, str]] = []
    for relative, content, display in _iter_files(path):
        entry = parse_entry(relative)
        assert entry is not None  # _iter_files only yields tree members
        decoded.append((entry, _decode(content, display), display))
    if not decoded:
        raise UserError(f"{path}: no images found; expected train/<class>/*.jpg|png and "
                        "test/<class>/*.jpg|png")
    prefixes = sorted({entry.prefix for entry, _, _ in decoded})
    if len(prefixes) > 1:
        trees = ", ".join(p or "." for p in prefixes)
        raise UserError(f"{path}: more than one split/class tree inside ({trees})")
    present = {entry.split for entry, _, _ in decoded}
    for split in ("train", "test"):
        if split not in present:
            raise UserError(f"{path}: missing split {split!r} (expected {split}/<class>/<image> files)")
    classes = sorted({entry.cls for entry, _, _ in decoded if entry.split == "train"})
    class_index = {name: i for i, name in enumerate(classes)}
    for entry, _, display in decoded:
        if entry.cls not in class_index:
            raise UserError(f"{display}: class {entry.cls!r} of split {entry.split!r} has no train images")
    # Colour wins: if any image is RGB, grey images get their channel repeated.
    channels = 3 if any(array.ndim == 3 for _, array, _ in decoded) else 1
    height, width = decoded[0][1].shape[:2]
    for _, array, display in decoded:
        if array.shape[:2] != (height, width):
            raise UserError(f"{display}: image is {array.shape[1]}x{array.shape[0]}, the first image is "
                            f"{width}x{height}; all images must have the same size (resize them first)")
    decoded.sort(key=lambda item: (item[0].split, class_index[item[0].cls], item[0].name))
    result: dict[str, ImageDataset] = {}
    for split in SPLITS:
        items = [(entry, array) for entry, array, _ in decoded if entry.split == split]
        if not items:
            continue
        images = np.empty((len(items), channels, height, width), dtype=np.uint8)
        for i, (_, array) in enumerate(items):
            images[i] = array.transpose(2, 0, 1) if array.ndim == 3 else array[None]
        labels = np.array([class_index[entry.cls] for entry, _ in items], dtype=np.int64)
        result[split] = ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), list(classes))
    return result


def _cache_path(path: Path, cache_dir: Path) -> Path:
    return cache_dir / f"imagefolder-{source_key(path)[:40]}.safetensors"


def _load_cache(cache_file: Path) -> dict[str, ImageDataset] | None:
    """The cached datasets, or None when the cache is missing or unreadable (it is then rebuilt)."""
    if not cache_file.is_file():
        return None
    try:
        with safe_open(str(cache_file), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != CACHE_FORMAT:
                return None
            classes = json.loads(metadata["classes"])
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        return {split: ImageDataset(tensors[f"{split}.images"], tensors[f"{split}.labels"], classes)
                for split in SPLITS if f"{split}.images" in tensors}
    except Exception:  # a truncated or foreign cache file is rebuilt, never trusted
        return None


def load_imagefolder(path: Path, cache_dir: str | None = None) -> dict[str, ImageDataset]:
    """Split name -> dataset for an image-folder tree or archive, decoded once and cached."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    cache_file = _cache_path(path, default_cache_dir(cache_dir))
    cached = _load_cache(cache_file)
    if cached is not None:
        return cached
    splits = decode_tree(path)
    tensors = {}
    for split, dataset in splits.items():
        tensors[f"{split}.images"] = dataset.images
        tensors[f"{split}.labels"] = dataset.labels
    classes = splits["train"].classes
    try:
        save_tensors(cache_file, tensors, {"format": CACHE_FORMAT, "classes": json.dumps(classes),
                                           "source": str(path)})
    except OSError as exc:  # an unwritable cache directory only costs the decode next time
        warnings.warn(f"could not write the image cache {cache_file} ({one_line(exc)})", stacklevel=2)
    return splits
