"""prunekit: prune neural networks while they train."""

from __future__ import annotations

__version__ = "0.1.0"

from prunekit.errors import UserError  # noqa: E402

__all__ = ["UserError", "__version__"]
