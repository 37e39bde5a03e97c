"""MNIST-family idx files (raw or .gz): `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-...`.

Format: big-endian header, magic 0x00000803 (uint8, 3 dims) for images or 0x00000801 (uint8, 1 dim) for
labels, then one uint32 per dimension, then the bytes.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from prunekit.data.archive import one_line
from prunekit.data.dataset import ImageDataset
from prunekit.errors import UserError

IMAGES_MAGIC = 0x803
LABELS_MAGIC = 0x801
MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one idx file (gzip-compressed if its name ends in .gz) and check its magic number and size."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"{path}: cannot read, the file is truncated or corrupt ({one_line(exc)})") from exc
    if len(raw) < 4:
        raise UserError(f"{path}: too short to be an idx file ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise UserError(f"{path}: bad idx magic number 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated idx header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(dims)  # Python ints: np.prod in int64 wraps (2^31 x 2^31 x 4 == 0)
    if len(raw) != expected:
        raise UserError(f"{path}: idx header says {'x'.join(map(str, dims))} values ({expected} bytes), "
                        f"the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def find_idx_file(directory: Path, stem: str) -> Path | None:
    """`stem` or `stem.gz` in `directory` (also the `stem.idx3-ubyte` spelling some mirrors use)."""
    alternatives = (stem, f"{stem}.gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz")
    for name in alternatives:
        if (directory / name).is_file():
            return directory / name
    return None


def has_idx_files(directory: Path) -> bool:
    return directory.is_dir() and find_idx_file(directory, IDX_FILES["test"][0]) is not None


def read_idx_split(directory: Path, split: str, classes: list[str]) -> ImageDataset:
    images_stem, labels_stem = IDX_FILES[split]
    image_file = find_idx_file(directory, images_stem)
    label_file = find_idx_file(directory, labels_stem)
    if image_file is None:
        raise UserError(f"{directory}: missing {images_stem} (or {images_stem}.gz)")
    if label_file is None:
        raise UserError(f"{directory}: missing {labels_stem} (or {labels_stem}.gz)")
    images = read_idx(image_file, IMAGES_MAGIC)
    labels = read_idx(label_file, LABELS_MAGIC).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise UserError(f"{image_file}: {images.shape[0]} images but {label_file.name} has "
                        f"{labels.shape[0]} labels")
    if labels.size and labels.max() >= len(classes):
        raise UserError(f"{label_file}: label {labels.max()} out of range for {len(classes)} classes")
    images_t = torch.from_numpy(images).unsqueeze(1).contiguous()
    return ImageDataset(images_t, torch.from_numpy(labels), list(classes))


def read_idx_dataset(directory: Path, classes: list[str]) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) from a directory of the four idx files."""
    return read_idx_split(directory, "train", classes), read_idx_split(directory, "test", classes)
