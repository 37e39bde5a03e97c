"""Seeds for one purpose each, derived from the run seed (DESIGN.md: one seeded generator per purpose)."""

from __future__ import annotations

import hashlib


def derived_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed for one purpose (e.g. regrowth sampling at epoch t) derived from the run seed.

    The first 8 bytes (little-endian) of sha256("seed:part1:part2:...") with the top bit cleared: stable across
    machines and Python versions, and independent streams for different `parts`.
    """
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)
