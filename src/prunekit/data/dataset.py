"""In-memory image datasets: uint8 images N x C x H x W plus int64 labels, and the train/val/test bundle."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prunekit.errors import UserError


@dataclass
class ImageDataset:
    """Images as one uint8 tensor (N x C x H x W, C=1 for grey) and int64 labels in [0, len(classes))."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise UserError(
                f"ImageDataset.images must be a uint8 N x C x H x W tensor, got {self.images.dtype} "
                f"with shape {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise UserError(f"ImageDataset.labels must be a 1-D int64 tensor, got {self.labels.dtype} "
                            f"with shape {tuple(self.labels.shape)}")
        if self.labels.numel() != self.images.shape[0]:
            raise UserError(f"ImageDataset has {self.images.shape[0]} images but "
                            f"{self.labels.numel()} labels")
        if not self.classes:
            raise UserError("ImageDataset.classes is empty")
        if self.labels.numel():
            low, high = int(self.labels.min()), int(self.labels.max())
            if low < 0 or high >= len(self.classes):
                raise UserError(f"ImageDataset labels must lie in [0, {len(self.classes)}), "
                                f"got [{low}, {high}]")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, c, h, w = self.images.shape
        return int(c), int(h), int(w)

    def select(self, indices: torch.Tensor) -> ImageDataset:
        """The images at `indices` (a copy), same class list."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        return ImageDataset(self.images[indices].contiguous(), self.labels[indices].contiguous(),
                            list(self.classes))


@dataclass
class DataSplits:
    """Train / test (and optional validation) datasets plus the train split's per-channel mean and std."""

    train: ImageDataset
    test: ImageDataset
    val: ImageDataset | None
    mean: tuple[float, ...]  # per-channel mean of train images / 255
    std: tuple[float, ...]  # per-channel population std of train images / 255

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.train.shape


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of uint8 images / 255, exact (from 256-bin channel histograms)."""
    n, c = images.shape[0], images.shape[1]
    if n == 0:
        raise UserError("cannot compute normalisation statistics of an empty training split")
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for channel in range(c):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).double()
        total = counts.sum()
        mean = (counts * values).sum() / total
        var = ((counts * values * values).sum() / total - mean * mean).clamp_min(0.0)
        std = float(var.sqrt())
        # A constant channel would divide by zero when normalising; fall back to std 1 (in /255 units: 255).
        means.append(float(mean) / 255.0)
        stds.append((std if std > 0 else 255.0) / 255.0)
    return tuple(means), tuple(stds)
