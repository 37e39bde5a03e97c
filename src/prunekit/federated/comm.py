"""Communication accounting (research note 6.4, FedDST's formulas, in bits).

A transfer carries the values at the active positions of every masked tensor, every value of the unmasked ones
(biases, norm layers, buffers), each at its dtype's width, plus each mask at one bit per position when the mask
changed:

    download (per sampled client) = values(global) + [mask bits if the global mask changed since last round]
    upload   (per replying client) = values(client) + [mask bits if the client changed the mask it received]

Departure from FedDST: round 1's download is counted in full (FedDST treats it as free, a shared seed).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from prunekit.federated.aggregate import split_masks


def payload_bits(arrays: Mapping[str, np.ndarray], send_masks: bool) -> int:
    """Bits of one transfer of a flat mapping (weights + MASK_PREFIX masks)."""
    weights, masks = split_masks(arrays)
    bits = 0
    for name, w in weights.items():
        width = 8 * np.asarray(w).dtype.itemsize
        bits += width * (int(masks[name].sum()) if name in masks else int(np.asarray(w).size))
    if send_masks:
        bits += sum(int(m.size) for m in masks.values())
    return bits


def masks_differ(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    """Whether the masks of two flat mappings differ anywhere."""
    ma, mb = split_masks(a)[1], split_masks(b)[1]
    return ma.keys() != mb.keys() or any(not np.array_equal(ma[k], mb[k]) for k in ma)
