"""A seeded random image dataset for tests: a smooth class pattern plus pixel noise, so it is learnable."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prunekit.data.dataset import ImageDataset

PATTERN_AMPLITUDE = 60.0  # grey levels of the class pattern around mid-grey
NOISE_STD = 40.0  # grey levels of independent per-pixel noise


def class_patterns(num_classes: int, shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """One smooth, left-right symmetric pattern per class (num_classes x C x H x W, values around 0).

    Smooth so a few pixels of random crop shift keep it recognisable; symmetric so flips keep it unchanged.
    """
    c, h, w = shape
    coarse = torch.randn(num_classes, c, min(4, h), min(4, w), generator=generator)
    fine = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return (fine + fine.flip(-1)) / 2


def make_synthetic(size: int, shape: tuple[int, int, int], num_classes: int, seed: int,
                   patterns: torch.Tensor) -> ImageDataset:
    """`size` images with balanced labels (shuffled); image = 128 + A * pattern[label] + noise, clipped."""
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(size) % num_classes)[torch.randperm(size, generator=generator)]
    noise = torch.randn((size, *shape), generator=generator) * NOISE_STD
    values = 128.0 + PATTERN_AMPLITUDE * patterns[labels] / patterns.std().clamp_min(1e-6) + noise
    images = values.round().clamp(0, 255).to(torch.uint8)
    return ImageDataset(images, labels.to(torch.int64), [f"class_{i}" for i in range(num_classes)])


def load_synthetic(size: int, shape: tuple[int, int, int], num_classes: int = 10,
                   seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) of `size` and max(size // 4, num_classes) images from the same class patterns."""
    patterns = class_patterns(num_classes, shape, torch.Generator().manual_seed(seed))
    train = make_synthetic(size, shape, num_classes, seed + 1, patterns)
    test = make_synthetic(max(size // 4, num_classes), shape, num_classes, seed + 2, patterns)
    return train, test
