"""Pruning methods: one module per method, each composing criteria, allocation, selection, schedule,
regularizer and regrowth. Adding a method means adding a module (registered with `@METHODS.register`) and a
preset, never editing the trainer or this file: every module of this package is imported here.

Where things live: `base.py` the contract; `params.py` what every `Params` shares; `budget.py` the MACs-target
search; `prune_once.py` and `prune_regrow.py` the two schedules methods reuse; `catalog.py` what
`prunekit methods` prints; every other module one method (or a family sharing one `Params`).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from prunekit.config import MethodConfig, build_dataclass
from prunekit.errors import UserError
from prunekit.methods.base import Decision, Method, TrainContext
from prunekit.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")


def build_method(cfg: MethodConfig) -> Method:
    """Instantiate the method named in the config, validating its parameters against its `Params` dataclass."""
    cls = METHODS.get(cfg.name)
    params_cls: Any = getattr(cls, "Params", None)
    if params_cls is None:
        raise UserError(f"method {cfg.name!r} declares no Params dataclass")
    params = build_dataclass(params_cls, dict(cfg.params), prefix="method.params.")
    return cls(params)


def method_modules() -> list[str]:
    """The modules of this package, in alphabetical order (`_private` ones left out)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def import_method_modules() -> None:
    """Import every module of this package (each method module registers itself on import)."""
    for module in method_modules():
        importlib.import_module(f"{__name__}.{module}")


import_method_modules()

from prunekit.methods.dense import Dense  # noqa: E402  (registered above; kept importable from here)

__all__ = ["METHODS", "Decision", "Dense", "Method", "TrainContext", "build_method", "import_method_modules",
           "method_modules"]
