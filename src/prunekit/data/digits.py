"""scikit-learn's bundled handwritten digits (1,797 8x8 grey images, no download): the offline default."""

from __future__ import annotations

import numpy as np
import torch

from prunekit.data.dataset import ImageDataset
from prunekit.data.splits import SPLIT_SEED, stratified_split
from prunekit.errors import UserError

DIGITS_TEST_FRACTION = 0.2


def load_digits_splits(seed: int = SPLIT_SEED) -> tuple[ImageDataset, ImageDataset]:
    """(train, test): a seeded stratified 80/20 split; pixel values 0..16 scaled to 0..255 uint8."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise UserError("data.name 'digits' needs scikit-learn (pip install scikit-learn)") from exc
    bunch = load_digits()
    values = np.asarray(bunch.images, dtype=np.float64)  # N x 8 x 8, integers 0..16
    images = torch.from_numpy(np.rint(values * 255.0 / 16.0).astype(np.uint8)).unsqueeze(1).contiguous()
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    classes = [str(int(name)) for name in bunch.target_names]
    full = ImageDataset(images, labels, classes)
    train_idx, test_idx = stratified_split(labels, round(DIGITS_TEST_FRACTION * len(full)), seed)
    return full.select(train_idx), full.select(test_idx)
