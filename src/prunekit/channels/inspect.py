"""inspect_rows(): a dry run that lists every channel group and every unsupported layer (never raises for them)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunekit.channels.groups import analyse_groups, unsupported_layers


def inspect_rows(model: nn.Module, example_inputs: torch.Tensor) -> list[dict[str, Any]]:
    """One row per traced group, then one row per unsupported layer.

    Group rows: kind="group", name, size, producers, consumers, bn, macs_share, prunable_internal, prunable_all and
    reason (why it cannot shrink, or None). Unsupported rows: kind="unsupported", name, type, reason. With any
    unsupported layer present, `channel_groups` raises; the group rows still show what the trace found.
    """
    unsupported = unsupported_layers(model)
    rows: list[dict[str, Any]] = []
    for analysis in analyse_groups(model, example_inputs):
        group = analysis.group
        prunable = analysis.blocked is None and not unsupported
        reason = analysis.blocked or ("the model has unsupported layers" if unsupported else None)
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
    return rows
