"""Shared set-up for the channel tests.

- The helper modules of this directory (zoo, masked_reference) are importable everywhere: tests/conftest.py puts
  this directory on sys.path.
- Runs every test here with oneDNN (mkldnn) off: these tests work in float64, and oneDNN's float64 convolutions
  (depthwise ones especially) take seconds per call on this CPU build where the native kernels take milliseconds.
"""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _native_float64_kernels() -> Iterator[None]:
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous
