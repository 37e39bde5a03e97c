"""Seeded, stratified splits: hold out a share of every class, with the total count exact."""

from __future__ import annotations

import numpy as np
import torch

# Data splits use their own fixed seed, so runs with different training seeds see the same split.
SPLIT_SEED = 0


def stratified_counts(class_sizes: np.ndarray, total: int) -> np.ndarray:
    """How many of each class to take so the counts sum to `total` and follow class proportions.

    Largest-remainder apportionment: floor of each class's quota, then one more for the classes with the
    largest fractional parts (ties go to the lower class index).
    """
    n = int(class_sizes.sum())
    total = max(0, min(int(total), n))
    if n == 0:
        return np.zeros_like(class_sizes)
    quotas = class_sizes.astype(np.float64) * total / n
    counts = np.floor(quotas).astype(np.int64)
    remainder = total - int(counts.sum())
    order = np.lexsort((np.arange(len(quotas)), -(quotas - counts)))
    counts[order[:remainder]] += 1
    return np.minimum(counts, class_sizes)


def stratified_split(labels: torch.Tensor, take: int,
                     seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (rest, taken), `taken` holding exactly `take` samples spread over classes.

    Both index tensors are sorted ascending, so the original order is kept inside each part.
    """
    labels_np = labels.cpu().numpy()
    classes = np.unique(labels_np)
    sizes = np.array([(labels_np == c).sum() for c in classes], dtype=np.int64)
    counts = stratified_counts(sizes, take)
    rng = np.random.default_rng(seed)
    taken_parts = []
    for c, k in zip(classes, counts, strict=True):
        members = np.flatnonzero(labels_np == c)
        taken_parts.append(rng.permutation(members)[:k])
    taken = np.sort(np.concatenate(taken_parts)) if taken_parts else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(labels_np), dtype=bool)
    mask[taken] = False
    rest = np.flatnonzero(mask)
    return torch.from_numpy(rest.astype(np.int64)), torch.from_numpy(taken.astype(np.int64))
