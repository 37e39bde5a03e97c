"""inspect_rows(): a dry run that lists every channel group and every unsupported layer (never raises for them)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunekit.channels.groups import analyse, unsupported_layers


def inspect_rows(model: nn.Module, example_inputs: torch.Tensor) -> list[dict[str, Any]]:
    """One row per traced group, then one row per unsupported layer.

    Group rows: kind="group", name, size, producers, consumers, bn, macs_share, prunable_internal, prunable_all and
    reason (why it cannot shrink, or None). Unsupported rows: kind="unsupported", name, type, reason: layers
    prunekit cannot slice, and Conv/Linear/norm modules that ran in the forward pass but are missing from the
    traced graph. With any layer prunekit cannot slice present, `channel_groups` raises; the group rows still show
    what the trace found.
    """
    unsupported = unsupported_layers(model)
    analysis = analyse(model, example_inputs)
    rows: list[dict[str, Any]] = []
    for item in analysis.groups:
        group = item.group
        prunable = item.blocked is None and not unsupported
        reason = item.blocked or ("the model has unsupported layers" if unsupported else None)
        rows.append({
            "kind": "group",
            "name": group.name,
            "size": group.size,
            "producers": list(group.producers),
            "consumers": list(group.consumers),
            "bn": group.bn,
            "macs_share": group.macs_share,
            "prunable_internal": prunable and group.internal,
            "prunable_all": prunable,
            "reason": reason,
        })
    for name, kind in unsupported:
        rows.append({"kind": "unsupported", "name": name, "type": kind,
                     "reason": "owns parameters or buffers that prunekit cannot slice"})
    for name in analysis.untraced:
        rows.append({"kind": "unsupported", "name": name, "type": type(model.get_submodule(name)).__name__,
                     "reason": "runs in the forward pass but is missing from the traced graph (the groups it "
                               "touches fail the numerical check)"})
    return rows
