"""Channel pruning core: channel groups, plans, and the supernet <-> subnet surgery (DESIGN.md, "supernet").

    groups = channel_groups(model, x, policy="all")        # traced with Torch-Pruning's DependencyGraph
    plan = ChannelPlan({"layer1.0.conv1": [0, 2, 5]})      # kept indices per group; others keep all
    subnet = materialize(model, plan, groups)              # physically smaller copy
    ... train subnet ...
    absorb(subnet, model, plan, groups)                    # write it back; removed channels keep their values
    macs_estimator(model, groups, x)(plan)                 # MACs per sample of that subnet, without building it
    check_plan_matches(model, groups, plan, x)             # float64: subnet == masked supernet, else UserError
"""

from prunekit.channels.compact import compact
from prunekit.channels.groups import (
    POLICIES,
    ChannelGroup,
    ChannelSlice,
    analyse_groups,
    channel_groups,
    require_prunable,
    unsupported_layers,
)
from prunekit.channels.inspect import inspect_rows
from prunekit.channels.macs import macs_estimator, plan_macs
from prunekit.channels.optimizer_state import (
    absorb_optimizer_state,
    load_optimizer_state_by_name,
    optimizer_state_by_name,
    slice_optimizer_state,
)
from prunekit.channels.persist import export_onnx, load_pruned_model, pruned_architecture, save_pruned_model
from prunekit.channels.plan import ChannelPlan
from prunekit.channels.surgery import absorb, kept_indices, materialize
from prunekit.channels.verify import check_plan_matches

__all__ = [
    "POLICIES",
    "ChannelGroup",
    "ChannelPlan",
    "ChannelSlice",
    "absorb",
    "absorb_optimizer_state",
    "analyse_groups",
    "channel_groups",
    "check_plan_matches",
    "compact",
    "export_onnx",
    "inspect_rows",
    "kept_indices",
    "load_optimizer_state_by_name",
    "load_pruned_model",
    "macs_estimator",
    "materialize",
    "optimizer_state_by_name",
    "plan_macs",
    "pruned_architecture",
    "require_prunable",
    "save_pruned_model",
    "slice_optimizer_state",
    "unsupported_layers",
]
