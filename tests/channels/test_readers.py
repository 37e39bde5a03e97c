"""Per-group readers against hand-indexed tensors of the layers they read."""

import torch
from zoo import TwoWriterNet

from prunekit.channels import ChannelPlan, channel_groups
from prunekit.channels.readers import (
    group_filters,
    group_gammas,
    group_square_norms,
    kept_fraction,
    l1_group_scores,
    masked_copy,
    removed_counts,
    sparse_sides,
)
from prunekit.criteria import sparse_channel_masks
from prunekit.models import create_model


def small_cnn():
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    x = torch.zeros(2, 1, 8, 8)
    return model, channel_groups(model, x, policy="internal")


def two_writer():
    torch.manual_seed(0)
    model = TwoWriterNet()
    with torch.no_grad():
        model.stem_bn.weight.copy_(torch.tensor([0.5, -2.0, 0.1, 0.3, 1.0, -0.2]))
        model.block_bn.weight.copy_(torch.tensor([-1.0, 0.4, 0.05, 0.6, 0.2, 3.0]))
    groups = channel_groups(model, torch.zeros(2, 3, 8, 8), policy="all")
    return model, next(g for g in groups if "stem" in g.producers), groups


def test_group_filters_drop_removed_input_channels_and_gammas_zero_removed_channels():
    model, groups = small_cnn()
    plan = ChannelPlan({"features.conv1": [0, 3, 5, 9], "features.conv2": list(range(0, 32, 2))})
    filters = group_filters(model, groups[1], plan, groups)
    weight = model.get_submodule("features.conv2").weight.detach().double()
    assert torch.equal(filters, weight[:, [0, 3, 5, 9]].reshape(32, 4, 9))  # every output row, MRU included
    gamma = group_gammas(model, groups[1], plan)
    expected = model.get_submodule("features.bn2").weight.detach().double().abs()
    expected[1::2] = 0.0
    assert torch.equal(gamma, expected)


def test_residual_stream_filters_stack_every_writer_with_padded_kernels():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=3)
    groups = {g.name: g for g in channel_groups(model, torch.zeros(2, 3, 32, 32), policy="all")}
    stream = groups["layer2.0.conv2"]  # writers: layer2.0.conv2 (3x3), layer2.0.shortcut.0 (1x1), ...
    filters = group_filters(model, stream, None, list(groups.values()))
    shortcut = model.get_submodule("layer2.0.shortcut.0").weight.detach().double().reshape(32, 16, 1)
    conv2 = model.get_submodule("layer2.0.conv2").weight.detach().double().reshape(32, 32, 9)
    assert filters.shape == (32, 32 + 16 + 32 + 32, 9)
    assert torch.equal(filters[:, :32], conv2)
    assert torch.equal(filters[:, 32:48, :1], shortcut) and not filters[:, 32:48, 1:].any()


def test_stream_gamma_is_the_largest_over_its_batchnorms():
    model, stream, _ = two_writer()
    assert torch.equal(group_gammas(model, stream, None),
                       torch.tensor([1.0, 2.0, 0.1, 0.6, 1.0, 3.0]).double())  # float32 gammas, read as float64


def test_l1_scores_and_square_norms_sum_over_the_stream_layers():
    model, stream, _ = two_writer()
    stem, block, fc = (model.get_submodule(n).weight.detach().double() for n in ("stem", "block", "fc"))
    # writers: stem and block (output rows); readers: block (input columns) and fc (input columns)
    l1 = stem.abs().sum(dim=(1, 2, 3)) + block.abs().sum(dim=(1, 2, 3))
    assert torch.allclose(l1_group_scores(model, stream), l1, rtol=1e-6)
    squares = (stem.pow(2).sum(dim=(1, 2, 3)) + block.pow(2).sum(dim=(1, 2, 3)) + block.pow(2).sum(dim=(0, 2, 3))
               + fc.pow(2).sum(dim=0))
    assert torch.allclose(group_square_norms(model, stream), squares, rtol=1e-12)


def test_masked_copy_zeroes_removed_channels_in_every_slice_and_leaves_the_supernet_alone():
    model, groups = small_cnn()
    assert masked_copy(model, None, groups) is model
    assert masked_copy(model, ChannelPlan({}), groups) is model
    plan = ChannelPlan({"features.conv2": list(range(8, 32))})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masked = masked_copy(model, plan, groups)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    state = masked.state_dict()
    for key in ("features.conv2.weight", "features.bn2.weight", "features.bn2.bias"):
        assert not state[key][:8].any() and torch.equal(state[key][8:], before[key][8:])
    assert not state["features.conv3.weight"][:, :8].any()
    assert torch.equal(state["features.conv3.weight"][:, 8:], before["features.conv3.weight"][:, 8:])


def test_sparse_sides_map_each_layer_mask_onto_the_group():
    model, stream, _ = two_writer()
    with torch.no_grad():
        model.stem.weight[2].zero_()
        model.block.weight[:, 2].zero_()
    writers, readers = sparse_sides(model, stream, sparse_channel_masks(model, 1e-4))
    assert [w.tolist() for w in writers] == [[c == 2 for c in range(6)], [False] * 6]
    assert [r.tolist() for r in readers] == [[c == 2 for c in range(6)], [False] * 6]


def test_removed_counts_and_kept_fraction():
    _, groups = small_cnn()
    old = ChannelPlan({"features.conv1": list(range(10))})
    new = ChannelPlan({"features.conv1": list(range(4)), "features.conv3": list(range(60))})
    assert removed_counts(old, new, groups) == {"features.conv1": 6, "features.conv3": 4}
    assert removed_counts(None, old, groups) == {"features.conv1": 6}
    assert kept_fraction(new, groups) == (4 + 32 + 60) / (16 + 32 + 64)
