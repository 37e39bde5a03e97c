"""compact(): the one-call user shortcut from a model and kept indices to a physically smaller model."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.channels.groups import channel_groups
from prunekit.channels.plan import ChannelPlan
from prunekit.channels.surgery import materialize


def compact(model: nn.Module, example_inputs: torch.Tensor, keep: dict[str, list[int]],
            policy: str = "all") -> nn.Module:
    """A new, physically smaller model keeping `keep[group]` channels; `model` is left untouched.

    Groups not named in `keep` keep all their channels; a name that is not a group under `policy` is a UserError.
    """
    groups = channel_groups(model, example_inputs, policy)
    plan = ChannelPlan({name: sorted(int(i) for i in indices) for name, indices in keep.items()})
    return materialize(model, plan, groups)
