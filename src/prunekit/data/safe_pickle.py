"""A restricted unpickler for the CIFAR python batches: plain containers and numpy arrays, nothing else.

`pickle.load` would run any callable a file names (os.system, ...). This unpickler's `find_class` resolves
only the few globals a numpy array needs, plus `_codecs.encode`, which protocol-2 pickles written by Python 3
use for bytes objects; it is replaced by a function that can only turn a str into latin-1 bytes.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from prunekit.data.archive import one_line
from prunekit.errors import UserError

# numpy's array reconstructor, wherever this numpy version keeps it (numpy.core or numpy._core)
_RECONSTRUCT = np.zeros(1).__reduce__()[0]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for `_codecs.encode` that only performs the str -> bytes step pickle protocol 2 needs."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not allowed")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy array reconstruction and latin-1 bytes."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed") from None


def safe_load_pickle(data: bytes, source: str) -> Any:
    """Unpickle `data` (python-2 style: str -> bytes) with the restricted unpickler; errors name `source`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise UserError(f"{source}: refused to read this pickle ({one_line(exc)})") from exc
    except Exception as exc:  # truncated or garbled: EOFError, ValueError, struct errors, ...
        raise UserError(f"{source}: not a readable pickle, the file is truncated or corrupt "
                        f"({type(exc).__name__}: {one_line(exc)})") from exc
