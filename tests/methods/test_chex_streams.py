"""CHEX on residual streams under `policy: all`: a stream with a projection (downsample) writer is scored as CHEX's
ResNet-50 code scores its downsample convs, on that conv's own filters (filter L1 norm, the CSS fallback where
d = C_in < C), for the initial prune and the selection; checked against NumPy on the projection's weight."""

from __future__ import annotations

import numpy as np
import torch

from prunekit.channels import channel_groups, readers
from prunekit.criteria.magnitude import l1_filter_select
from prunekit.methods.base import TrainContext
from prunekit.methods.chex import CHEX, CHEXParams, shortcut_writers
from prunekit.models import create_model

STREAM = "layer2.0.conv2"  # writers: layer2.{0,1,2}.conv2 and the projection layer2.0.shortcut.0
PROJECTION = "layer2.0.shortcut.0"


def small_resnet(constructed: bool):
    torch.manual_seed(0)
    model = create_model("resnet20", widths=(4, 8, 16))
    if constructed:  # projection rows with L1 norms rising with the channel, the conv2 rows larger and falling
        with torch.no_grad():
            projection = model.get_submodule(PROJECTION).weight
            projection.copy_(torch.arange(1, 9, dtype=torch.float32).view(8, 1, 1, 1).expand_as(projection) / 10)
            for block in range(3):
                conv2 = model.get_submodule(f"layer2.{block}.conv2").weight
                conv2.copy_(torch.arange(8, 0, -1, dtype=torch.float32).view(8, 1, 1, 1).expand_as(conv2))
    example = torch.zeros(1, 3, 32, 32)
    groups = channel_groups(model, example, policy="all")
    return model, groups, TrainContext(model=model, optimizer=None, steps_per_epoch=1, epochs=4,
                                       example_inputs=example, supernet=model, groups=groups, seed=0)


def l1_top(weight: np.ndarray, rows: list[int], count: int) -> list[int]:
    """The `count` of `rows` with the largest filter L1 norm (ties: lower index), by NumPy."""
    norms = np.abs(weight[rows].reshape(len(rows), -1)).sum(axis=1)
    order = sorted(range(len(rows)), key=lambda i: (-norms[i], rows[i]))
    return sorted(rows[i] for i in order[:count])


def test_the_projection_writers_are_chex_s_downsample_convs():
    model = create_model("resnet50")  # CHEX's hard-coded list: the four downsample convs (skip = [5, 15, 28, 47])
    groups = channel_groups(model, torch.zeros(1, 3, 64, 64), policy="all")
    found = sorted(name for g in groups for name in shortcut_writers(g, groups, model))
    assert found == [f"layer{i}.0.downsample.0" for i in (1, 2, 3, 4)]
    small, small_groups, _ = small_resnet(False)
    by_name = {g.name: shortcut_writers(g, small_groups, small) for g in small_groups}
    assert by_name["conv1"] == []  # stage 1: the stem and the conv2s, no projection
    assert by_name[STREAM] == [PROJECTION] and by_name["layer3.0.conv2"] == ["layer3.0.shortcut.0"]
    assert by_name["layer2.0.conv1"] == []  # single-writer groups: unchanged


def test_initial_prune_of_a_stream_ranks_the_projection_filters():
    _, groups, ctx = small_resnet(True)
    method = CHEX(CHEXParams(sparsity=0.5, delta0=0.2, t_prune=2, policy="all"))
    plan = method.on_train_start(ctx).plan
    weight = ctx.supernet.get_submodule(PROJECTION).weight.detach().numpy()
    keep = int(8 * (1 - 0.3))  # CHEX's init_channel_mask at S - delta_0: int(C (1 - r))
    assert plan.keep[STREAM] == l1_top(weight, list(range(8)), keep) == [3, 4, 5, 6, 7]
    # the stacked writers (the base class's filters) keep the other end; a stream without a projection and a
    # single-writer group read the same filters as before
    by_name = {g.name: g for g in groups}
    assert l1_filter_select(readers.group_filters(ctx.supernet, by_name[STREAM], None, groups), keep) == [0, 1, 2, 3, 4]
    for name in ("conv1", "layer2.0.conv1"):
        assert torch.equal(method.group_filters(ctx.supernet, by_name[name], None, groups),
                           readers.group_filters(ctx.supernet, by_name[name], None, groups))


def test_selection_of_a_stream_is_l1_over_the_projection_inputs_kept_now():
    _, groups, ctx = small_resnet(False)
    method = CHEX(CHEXParams(sparsity=0.5, delta0=0.2, t_prune=2, policy="all"))
    ctx.plan = method.on_train_start(ctx).plan
    decision = method.decide(2, ctx)  # t = T_prune: delta = 0, no regrowth, the kept set is the selection
    assert decision.info["regrown_total"] == 0
    stream_inputs = decision.plan.kept(next(g for g in groups if g.name == "conv1"))  # decided before STREAM
    weight = ctx.supernet.get_submodule(PROJECTION).weight.detach().numpy()[:, stream_inputs]
    assert weight.shape[1] < len(ctx.plan.keep[STREAM])  # d = C_in < C: CHEX's CSS falls back to L1
    expected = l1_top(weight, ctx.plan.keep[STREAM], decision.info["selected"][STREAM])
    assert decision.plan.keep[STREAM] == expected
