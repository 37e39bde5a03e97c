"""Pruning methods: one module per method, each composing criteria, allocation, selection, schedule,
regularizer and regrowth. Adding a method means adding a module and a preset, never editing the trainer."""

from __future__ import annotations

import dataclasses
from typing import Any

from prunekit.config import MethodConfig, build_dataclass
from prunekit.errors import UserError
from prunekit.methods.base import Decision, Method, TrainContext
from prunekit.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")


@dataclasses.dataclass
class NoParams:
    """Dense training takes no parameters."""


@METHODS.register("dense")
class Dense(Method):
    """Plain dense training: the baseline every pruning method is compared with."""

    name = "dense"
    Params = NoParams

    def __init__(self, params: NoParams | None = None) -> None:
        self.params = params or NoParams()


def build_method(cfg: MethodConfig) -> Method:
    """Instantiate the method named in the config, validating its parameters against its `Params` dataclass."""
    cls = METHODS.get(cfg.name)
    params_cls: Any = getattr(cls, "Params", None)
    if params_cls is None:
        raise UserError(f"method {cfg.name!r} declares no Params dataclass")
    params = build_dataclass(params_cls, dict(cfg.params), prefix="method.params.")
    return cls(params)


# Each method module registers itself on import.
from prunekit.methods import (  # noqa: E402,F401
    chex,
    hrank,
    one_shot,
    prunetrain,
    reprune,
    slimming,
    torch_pruning_baseline,
)

__all__ = ["METHODS", "Decision", "Dense", "Method", "TrainContext", "build_method"]
