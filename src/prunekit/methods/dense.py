"""Dense training: the baseline every pruning method is compared with.

    method:
      name: dense
"""

from __future__ import annotations

import dataclasses

from prunekit.methods import METHODS
from prunekit.methods.base import Method


@dataclasses.dataclass
class NoParams:
    """Dense training takes no parameters."""


@METHODS.register("dense")
class Dense(Method):
    """Plain dense training: every hook does nothing."""

    name = "dense"
    summary = "plain dense training, the baseline every pruning method is compared with"
    paper = "-"
    Params = NoParams

    def __init__(self, params: NoParams | None = None) -> None:
        self.params = params or NoParams()
