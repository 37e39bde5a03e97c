"""Communication bits on a hand-computed example."""

import numpy as np

from prunekit.federated.aggregate import MASK_PREFIX
from prunekit.federated.comm import masks_differ, payload_bits


def test_payload_bits_by_hand():
    mask = np.zeros((3, 4), bool)
    mask[0, :3] = True  # 3 active of 12
    arrays = {"w": np.ones((3, 4), np.float32), MASK_PREFIX + "w": mask, "b": np.zeros(3, np.float32),
              "n": np.array(5, np.int64), "h": np.zeros(2, np.float16)}
    values = 3 * 32 + 3 * 32 + 64 + 2 * 16
    assert payload_bits(arrays, send_masks=False) == values
    assert payload_bits(arrays, send_masks=True) == values + 12
    other = dict(arrays)
    other[MASK_PREFIX + "w"] = ~mask
    assert masks_differ(arrays, other) and not masks_differ(arrays, dict(arrays))
