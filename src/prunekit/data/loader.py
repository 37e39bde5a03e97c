"""Batches of augmented, normalised images, built on whole batches at once (no per-sample Python loop).

Randomness is a pure function of (seed, epoch): the shuffle order, crop offsets and flips of a whole epoch are
drawn up front from generators seeded by (seed, epoch, purpose), and batch k takes slice k of them. So
`iterate(e)` twice gives identical batches and `iterate(e, start_step=k)` continues exactly where an
interrupted epoch stopped.

With `resident=True` the dataset itself is held on the training device (uint8, moved once) and every batch is
gathered, cropped, flipped and normalised there: no per-batch host work or copy (the GPU path). The batches are
bitwise those of the host path, which gathers the uint8 batch on the host and copies it before augmenting.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from prunekit.data.dataset import ImageDataset

_SHUFFLE, _CROP, _FLIP = 0, 1, 2  # generator purposes


def epoch_generator(seed: int, epoch: int, purpose: int) -> torch.Generator:
    """A CPU generator whose stream depends only on (seed, epoch, purpose)."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, epoch, purpose])
    return torch.Generator().manual_seed(int(state.generate_state(1, dtype=np.uint64)[0] >> 1))


def crop_and_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                  padding: int) -> torch.Tensor:
    """Random crop with zero padding, then horizontal flip, for every image of a batch at once.

    `offsets` (B x 2, values 0..2*padding) are each crop's top-left corner in the zero-padded image;
    `flips` (B,) says which crops are mirrored. The flip is folded into the column index, so the whole thing
    is one gather.
    """
    b, c, h, w = images.shape
    device = images.device
    offsets = offsets.to(device)
    flips = flips.to(device)
    padded = F.pad(images, (padding, padding, padding, padding)) if padding > 0 else images
    rows = offsets[:, 0:1] + torch.arange(h, device=device)  # B x H
    cols_forward = torch.arange(w, device=device)
    cols = offsets[:, 1:2] + torch.where(flips[:, None], w - 1 - cols_forward, cols_forward)  # B x W
    hp, wp = padded.shape[2], padded.shape[3]
    # Flat index of (row, col) inside one padded channel plane, gathered over the flattened plane.
    flat = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, hp * wp).gather(2, flat).reshape(b, c, h, w)


def on_device(dataset: ImageDataset, device: torch.device | str) -> ImageDataset:
    """`dataset` with its images and labels on `device` (the dataset itself when they are there already), so that
    several loaders over one split share one device copy."""
    device = torch.device(device)
    if dataset.images.device == device and dataset.labels.device == device:
        return dataset
    return ImageDataset(dataset.images.to(device), dataset.labels.to(device), list(dataset.classes))


class BatchLoader:
    """Iterate over a dataset in batches: (float32 normalised N x C x H x W on `device`, int64 labels).

    `resident`: hold the dataset on `device` and gather batches there (see the module docstring)."""

    def __init__(self, dataset: ImageDataset, batch_size: int, *, mean: Sequence[float],
                 std: Sequence[float], shuffle: bool, augment: bool, crop_padding: int = 4, flip: bool = True,
                 normalize: bool = True, drop_last: bool = False, device: torch.device | str = "cpu",
                 channels_last: bool = False, seed: int = 0, resident: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        channels = dataset.shape[0]
        if normalize and (len(mean) != channels or len(std) != channels):
            raise ValueError(f"mean/std need {channels} values for {channels}-channel images, "
                             f"got {len(mean)} and {len(std)}")
        self.device = torch.device(device)
        self.resident = resident
        self.dataset = on_device(dataset, self.device) if resident else dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.crop_padding = crop_padding
        self.flip = flip
        self.normalize = normalize
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.seed = seed
        # Distributed training: this process takes positions rank, rank + world, ... of every global batch, so
        # the global batches (order and augmentation) are those of a single process for the same seed.
        self.rank, self.world = 0, 1
        # x_normalised = (x / 255 - mean) / std = x * scale - shift, per channel
        std_t = torch.tensor(std if normalize else [1.0] * channels, dtype=torch.float64)
        mean_t = torch.tensor(mean if normalize else [0.0] * channels, dtype=torch.float64)
        self._scale = (1.0 / (255.0 * std_t)).float().view(1, -1, 1, 1).to(self.device)
        self._shift = (mean_t / std_t).float().view(1, -1, 1, 1).to(self.device)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def global_batch_samples(self, step: int) -> int:
        """Samples in batch `step` of an epoch over all processes (this process sees its share of them)."""
        return max(0, min(self.batch_size, len(self.dataset) - step * self.batch_size))

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """Dataset indices in the order epoch `epoch` visits them."""
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=epoch_generator(self.seed, epoch, _SHUFFLE))

    def epoch_augmentation(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop offsets (N x 2) and flips (N,) for every position of epoch `epoch`."""
        n = len(self.dataset)
        pad = self.crop_padding
        offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=epoch_generator(self.seed, epoch, _CROP))
        if self.flip:
            flips = torch.rand(n, generator=epoch_generator(self.seed, epoch, _FLIP)) < 0.5
        else:
            flips = torch.zeros(n, dtype=torch.bool)
        return offsets, flips

    def iterate(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches start_step.. of epoch `epoch`; the same (seed, epoch) always gives the same batches."""
        steps = len(self)
        if not 0 <= start_step <= steps:
            raise ValueError(f"start_step must be in [0, {steps}], got {start_step}")
        order = self.epoch_order(epoch)
        # the epoch's crop offsets and flips go to the device once, not batch by batch
        augmentation = ([t.to(self.device) for t in self.epoch_augmentation(epoch)] if self.augment else None)
        if self.resident:
            order = order.to(self.device)
        images_all, labels_all = self.dataset.images, self.dataset.labels
        for step in range(start_step, steps):
            lo, hi = step * self.batch_size, min((step + 1) * self.batch_size, len(order))
            shard = slice(lo + self.rank, hi, self.world)
            index = order[shard]
            if self.resident:  # index_select on the device: no host synchronisation
                images, labels = images_all.index_select(0, index), labels_all.index_select(0, index)
            else:
                images = images_all[index].to(self.device, non_blocking=True)
                labels = labels_all[index].to(self.device, non_blocking=True)
            if augmentation is not None:
                offsets, flips = augmentation
                images = crop_and_flip(images, offsets[shard], flips[shard], self.crop_padding)
            batch = images.float().mul_(self._scale).sub_(self._shift)
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            yield batch, labels
