"""Shared set-up for the channel tests.

- Makes the helper modules of this directory (zoo, masked_reference) importable under pytest's importlib mode.
- Runs every test here with oneDNN (mkldnn) off: these tests work in float64, and oneDNN's float64 convolutions
  (depthwise ones especially) take seconds per call on this CPU build where the native kernels take milliseconds.
"""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _native_float64_kernels() -> Iterator[None]:
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous
