"""derived_seed: sha256 of "seed:part:...", first 8 bytes little-endian, top bit cleared (checked with struct)."""

import hashlib
import struct

from prunekit.seeding import derived_seed


def test_derived_seed_is_the_documented_hash_and_separates_purposes():
    for seed, parts in [(0, ()), (0, (1,)), (7, (3, 0, 0xC1)), (2**40, (5, 0x5E6))]:
        text = ":".join(str(p) for p in (seed, *parts)).encode()
        (expected,) = struct.unpack("<Q", hashlib.sha256(text).digest()[:8])
        assert derived_seed(seed, *parts) == expected % 2**63
    seeds = {derived_seed(0, t, index) for t in range(10) for index in range(10)}
    assert len(seeds) == 100 and all(0 <= s < 2**63 for s in seeds)
