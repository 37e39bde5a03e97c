"""CIFAR-10 / CIFAR-100 in the standard "python version" format, from a directory or the .tar.gz.

Layout: `cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}` and
`cifar-100-python/{train, test, meta}`. Each batch is a pickled dict with b"data" (uint8, N x 3072, the
red, green, blue 32x32 planes) and b"labels" (CIFAR-10) or b"fine_labels" (CIFAR-100). Batches are read with
the restricted unpickler in `safe_pickle`, never with `pickle.load`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunekit.data.archive import is_archive, iter_tar_files
from prunekit.data.dataset import ImageDataset
from prunekit.data.safe_pickle import safe_load_pickle
from prunekit.errors import UserError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# The fine label names in label order (alphabetical), as in the archive's `meta` file.
CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl",
    "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair",
    "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin",
    "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp",
    "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck",
    "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television",
    "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf",
    "woman", "worm",
]


@dataclass(frozen=True)
class CifarLayout:
    folder: str  # directory name inside the official archive
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: bytes
    names_key: bytes
    classes: tuple[str, ...]


CIFAR_LAYOUTS = {
    "cifar10": CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                           "batches.meta", b"labels", b"label_names", tuple(CIFAR10_CLASSES)),
    "cifar100": CifarLayout("cifar-100-python", ("train",), "test", "meta", b"fine_labels",
                            b"fine_label_names", tuple(CIFAR100_CLASSES)),
}


def cifar_batch_dir(path: Path, variant: str) -> Path | None:
    """The directory holding the batch files: `path` itself or its official sub-folder; None if neither."""
    layout = CIFAR_LAYOUTS[variant]
    for candidate in (path, path / layout.folder):
        if (candidate / layout.test_file).is_file() or (candidate / layout.train_files[0]).is_file():
            return candidate
    return None


def is_cifar_member(member_name: str, variant: str) -> bool:
    """Whether an archive member is one of the CIFAR batch files (used to tell batches from image folders)."""
    layout = CIFAR_LAYOUTS[variant]
    parts = member_name.replace("\\", "/").strip("/").split("/")
    # CIFAR-100's files are called train/test/meta: only count them inside the official folder name.
    if variant == "cifar100":
        return len(parts) >= 2 and parts[-2] == layout.folder and parts[-1] in (layout.test_file, "train")
    return parts[-1] in (layout.test_file, layout.train_files[0])


def _read_files(path: Path, variant: str) -> dict[str, tuple[bytes, str]]:
    """name -> (content, display path) for every batch/meta file found in a directory or archive."""
    layout = CIFAR_LAYOUTS[variant]
    wanted = (*layout.train_files, layout.test_file, layout.meta_file)
    found: dict[str, tuple[bytes, str]] = {}
    if is_archive(path):
        def want(name: str) -> bool:
            parts = name.replace("\\", "/").strip("/").split("/")
            if parts[-1] not in wanted:
                return False
            return variant != "cifar100" or (len(parts) >= 2 and parts[-2] == layout.folder)

        for name, content in iter_tar_files(path, want):
            base = name.replace("\\", "/").rstrip("/").split("/")[-1]
            if base in found:
                raise UserError(f"{path}: the archive holds two files named {base!r}")
            found[base] = (content, f"{path}:{name}")
        return found
    batch_dir = cifar_batch_dir(path, variant)
    if batch_dir is None:
        raise UserError(f"{path}: no {layout.folder} batch files here (expected {layout.test_file!r} and "
                        f"{', '.join(layout.train_files)})")
    for name in wanted:
        file = batch_dir / name
        if file.is_file():
            found[name] = (file.read_bytes(), str(file))
    return found


def _parse_batch(obj: Any, label_key: bytes, num_classes: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Check one unpickled batch and return (uint8 N x 3 x 32 x 32, int64 labels)."""
    if not isinstance(obj, dict):
        raise UserError(f"{source}: expected a pickled dict, got {type(obj).__name__}")
    if b"data" not in obj or label_key not in obj:
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        raise UserError(f"{source}: a CIFAR batch needs keys b'data' and {label_key!r}, found {keys}")
    data, labels = obj[b"data"], obj[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = f"{data.dtype} array {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"{source}: b'data' must be a uint8 array of shape N x 3072, got {what}")
    if isinstance(labels, np.ndarray):
        labels = labels.tolist()
    if not isinstance(labels, list) or not all(type(v) is int for v in labels):
        raise UserError(f"{source}: {label_key!r} must be a list of integers")
    if len(labels) != data.shape[0]:
        raise UserError(f"{source}: {data.shape[0]} images but {len(labels)} labels")
    label_array = np.asarray(labels, dtype=np.int64)
    if label_array.size and (label_array.min() < 0 or label_array.max() >= num_classes):
        raise UserError(f"{source}: labels must lie in [0, {num_classes}), got "
                        f"[{label_array.min()}, {label_array.max()}]")
    return data.reshape(-1, 3, 32, 32), label_array


def _parse_names(obj: Any, layout: CifarLayout, source: str) -> list[str]:
    names = obj.get(layout.names_key) if isinstance(obj, dict) else None
    if (not isinstance(names, list) or len(names) != len(layout.classes)
            or not all(isinstance(n, bytes | str) for n in names)):
        raise UserError(f"{source}: expected {layout.names_key!r} with {len(layout.classes)} class names")
    return [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]


def read_cifar(path: Path, variant: str) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) of CIFAR-10 (`variant="cifar10"`) or CIFAR-100 from a batch directory or the archive."""
    layout = CIFAR_LAYOUTS[variant]
    files = _read_files(path, variant)
    missing = [name for name in (*layout.train_files, layout.test_file) if name not in files]
    if missing:
        raise UserError(f"{path}: missing CIFAR file(s) {', '.join(missing)}")
    classes = list(layout.classes)
    if layout.meta_file in files:
        content, source = files[layout.meta_file]
        classes = _parse_names(safe_load_pickle(content, source), layout, source)

    def split(names: tuple[str, ...]) -> ImageDataset:
        parts = []
        for name in names:
            content, source = files[name]
            batch = safe_load_pickle(content, source)
            parts.append(_parse_batch(batch, layout.label_key, len(classes), source))
        images = torch.from_numpy(np.ascontiguousarray(np.concatenate([p[0] for p in parts])))
        labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        return ImageDataset(images, labels, classes)

    return split(layout.train_files), split((layout.test_file,))
