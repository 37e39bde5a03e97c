"""Crafted idx headers: sizes whose product overflows int64 are refused in one line (issue 18)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from prunekit.data.idx import IMAGES_MAGIC, read_idx
from prunekit.errors import UserError


def test_header_whose_size_wraps_in_int64(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">IIII", IMAGES_MAGIC, 2**31, 2**31, 4))  # 2^64 bytes: 0 in int64 arithmetic
    with pytest.raises(UserError, match="18446744073709551632 bytes") as caught:
        read_idx(path, IMAGES_MAGIC)
    assert "\n" not in str(caught.value)


def test_small_header_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">IIII", IMAGES_MAGIC, 2, 1, 3) + bytes(range(6)))
    assert read_idx(path, IMAGES_MAGIC).tolist() == [[[0, 1, 2]], [[3, 4, 5]]]
