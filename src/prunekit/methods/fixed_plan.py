"""Training on a channel plan fixed before the run starts (the structured lottery ticket's levels).

    method:
      name: fixed_plan
      params: {policy: internal}

The method makes no decision: it only declares a `channel_policy`, so the Trainer traces the channel groups and a
`StartPoint(plan=...)` can materialize the plan before the first step. Without a start plan it is dense training
(on the traced supernet).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from prunekit.channels import POLICIES
from prunekit.errors import UserError
from prunekit.methods import METHODS
from prunekit.methods.base import Method
from prunekit.methods.params import POLICY_HELP, param


@dataclasses.dataclass
class FixedPlanParams:
    """method.params of `fixed_plan`."""

    policy: Literal["internal", "all"] = param("internal", POLICY_HELP)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise UserError(f"method.params.policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")


@METHODS.register("fixed_plan")
class FixedPlan(Method):
    """Traces the channel groups under `policy`; every hook does nothing (the plan comes from the start point)."""

    name = "fixed_plan"
    summary = "train on a channel plan given at the start (structured lottery levels); no decisions"
    paper = "-"
    Params = FixedPlanParams

    def __init__(self, params: FixedPlanParams | None = None) -> None:
        self.params = params or FixedPlanParams()
        self.channel_policy = self.params.policy
