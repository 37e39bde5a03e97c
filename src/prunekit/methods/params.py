"""What every method's `Params` dataclass shares: fields with help strings, and one validation of the keys
that channel methods have in common (policy, min_channels, prune_epoch, and a MACs budget).

Convention: every field is declared with `param(default, "help")` (or `param(help=..., factory=list)`); its help
is what `prunekit methods` prints. A dataclass that mixes in `ChannelParams` calls `self.check_channel_params()`
first in `__post_init__`, then checks its own keys. Mistakes are `UserError`s naming `method.params.KEY`.

    @dataclasses.dataclass
    class MyParams(ChannelParams):
        amount_key: ClassVar[str] = "rate"       # give exactly one of rate and target_macs_ratio
        rate: float | None = param(None, "fraction of every group's channels to remove")
        target_macs_ratio: float | None = param(None, "fraction of the dense MACs to keep, in (0, 1]")
        policy: Literal["internal", "all"] = param("internal", POLICY_HELP)
        min_channels: int = param(1, MIN_CHANNELS_HELP)

        def __post_init__(self) -> None:
            self.check_channel_params()
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

from prunekit.channels import POLICIES
from prunekit.errors import UserError

PREFIX = "method.params."
POLICY_HELP = ('channel policy: "internal" (groups with one writer; residual streams keep their width) or "all" '
               "(residual streams too)")
MIN_CHANNELS_HELP = "no group keeps fewer channels than this"
TARGET_MACS_HELP = "alternatively, the fraction of the dense MACs to keep, in (0, 1]"
PRUNE_EPOCH_HELP = "required: epochs trained before the pruning decision (0: prune at initialisation)"


def param(default: Any = dataclasses.MISSING, help: str = "", *,  # noqa: A002 (the help string)
          factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field of a method's `Params` with its help string (`field.metadata["help"]`)."""
    if not help:
        raise ValueError("every method parameter needs a help string")
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def field_help(field: dataclasses.Field[Any]) -> str:
    """The help string a `param` field carries ('' for a plain field)."""
    return str(field.metadata.get("help", ""))


def check_rate(rate: float, key: str) -> None:
    """UserError unless 0 <= rate <= 1 (`key`: the parameter's name, without the prefix)."""
    if not 0.0 <= rate <= 1.0 or math.isnan(rate):
        raise UserError(f"{PREFIX}{key} must lie in [0, 1], got {rate}")


def check_prune_epoch(prune_epoch: int, epochs: int, method: str) -> None:
    """UserError unless the pruning epoch lies within the run (0 = before the first step)."""
    if not 0 <= prune_epoch <= epochs:
        raise UserError(f"{method}: {PREFIX}prune_epoch must lie in [0, train.epochs = {epochs}], "
                        f"got {prune_epoch}")


class ChannelParams:
    """Mixin for `Params` dataclasses: validates whichever shared keys the dataclass has.

    - `prune_epoch`: required (its default -1 means "not given");
    - `policy`: one of `channels.POLICIES`;
    - `min_channels`: at least 1;
    - a MACs budget, when `amount_key` names the alternative to `target_macs_ratio` (e.g. "rate"): exactly one
      of the two is given, and `target_macs_ratio` lies in (0, 1]. The range of the amount itself is the
      method's to check.
    """

    amount_key: ClassVar[str | None] = None

    def check_channel_params(self) -> None:
        values = vars(self)
        if "prune_epoch" in values and values["prune_epoch"] < 0:
            raise UserError(f"{PREFIX}prune_epoch is required: the number of epochs trained before pruning "
                            f"(0 = at initialisation), got {values['prune_epoch']}")
        if "policy" in values and values["policy"] not in POLICIES:
            raise UserError(f"{PREFIX}policy must be one of {', '.join(POLICIES)}, got {values['policy']!r}")
        if "min_channels" in values and values["min_channels"] < 1:
            raise UserError(f"{PREFIX}min_channels must be >= 1, got {values['min_channels']}")
        if self.amount_key is None:
            return
        ratio = values["target_macs_ratio"]
        if (values[self.amount_key] is None) == (ratio is None):
            raise UserError(f"method.params: give exactly one of {self.amount_key} and target_macs_ratio (the fraction "
                            "of the dense MACs to keep)")
        if ratio is not None and not 0.0 < ratio <= 1.0:
            raise UserError(f"{PREFIX}target_macs_ratio must lie in (0, 1], got {ratio}")


__all__ = ["MIN_CHANNELS_HELP", "POLICY_HELP", "PREFIX", "PRUNE_EPOCH_HELP", "TARGET_MACS_HELP", "ChannelParams",
           "check_prune_epoch", "check_rate", "field_help", "param"]
