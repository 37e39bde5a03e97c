"""materialize / absorb against the independent masked reference (tests/channels/masked_reference.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from masked_reference import install_masks
from torch import nn
from zoo import INPUT_SHAPE, ZOO, build

from prunekit.channels import ChannelPlan, absorb, channel_groups, materialize


def random_plan(groups, seed: int) -> ChannelPlan:
    generator = torch.Generator().manual_seed(seed)
    keep = {}
    for group in groups:
        count = int(torch.randint(1, group.size, (1,), generator=generator))
        keep[group.name] = sorted(torch.randperm(group.size, generator=generator)[:count].tolist())
    return ChannelPlan(keep)


def inputs(batch: int, seed: int, shape=INPUT_SHAPE) -> torch.Tensor:
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def check_shape_attributes(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            assert module.weight.shape[0] == module.out_channels
            assert module.weight.shape[1] * module.groups == module.in_channels
        elif isinstance(module, nn.Linear):
            assert tuple(module.weight.shape) == (module.out_features, module.in_features)
        elif isinstance(module, nn.BatchNorm2d):
            assert module.running_mean.numel() == module.num_features == module.weight.numel()


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_bitwise_equal(before: dict[str, torch.Tensor], model: nn.Module) -> None:
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_subnet_equals_masked_supernet_and_absorb_is_identity(name: str, seed: int) -> None:
    supernet = build(name, seed).eval()
    groups = channel_groups(supernet, inputs(1, 0))
    plan = random_plan(groups, seed)
    before = state_copy(supernet)

    subnet = materialize(supernet, plan, groups)
    assert_bitwise_equal(before, supernet)  # materialize leaves the supernet untouched
    check_shape_attributes(subnet)
    assert sum(p.numel() for p in subnet.parameters()) < sum(p.numel() for p in supernet.parameters())
    assert [n for n, _ in subnet.named_modules()] == [n for n, _ in supernet.named_modules()]

    reference = copy.deepcopy(supernet)
    install_masks(reference, groups, plan, inputs(64, 99))
    x = inputs(4, seed + 10)
    with torch.no_grad():
        assert (subnet(x) - reference(x)).abs().max().item() < 1e-9

    absorb(subnet, supernet, plan, groups)
    assert_bitwise_equal(before, supernet)


def test_full_plan_reproduces_supernet_bitwise() -> None:
    supernet = build("resnet").eval()
    groups = channel_groups(supernet, inputs(1, 0))
    subnet = materialize(supernet, ChannelPlan.full(groups), groups)
    x = inputs(2, 3)
    with torch.no_grad():
        assert torch.equal(subnet(x), supernet(x))


def test_materialize_keeps_mode_dtype_and_requires_grad() -> None:
    supernet = build("mobilenetv2", dtype=torch.float32).train()
    supernet.stem[0].weight.requires_grad_(False)
    groups = channel_groups(supernet, inputs(1, 0).float())
    subnet = materialize(supernet, random_plan(groups, 5), groups)
    assert subnet.training and all(m.training for m in subnet.modules())
    assert {p.dtype for p in subnet.parameters()} == {torch.float32}
    assert not subnet.stem[0].weight.requires_grad
    depthwise = subnet.blocks[0].conv[3]
    assert depthwise.groups == depthwise.in_channels == depthwise.out_channels == depthwise.weight.shape[0]
    # tracing switched the supernet to eval and back; flags restored
    assert supernet.training and not supernet.stem[0].weight.requires_grad


def test_absorb_writes_trained_values_at_kept_indices_only() -> None:
    supernet = build("vgg").eval()
    groups = channel_groups(supernet, inputs(1, 0))
    plan = ChannelPlan({"features.4": [1, 5, 7]})
    before = state_copy(supernet)
    subnet = materialize(supernet, plan, groups)
    with torch.no_grad():
        subnet.features[4].weight.add_(1.0)  # conv rows 1, 5, 7 of the supernet
        subnet.features[8].weight.add_(2.0)  # columns 1, 5, 7 of the next conv
    absorb(subnet, supernet, plan, groups)
    kept = torch.tensor([1, 5, 7])
    removed = torch.tensor([i for i in range(12) if i not in (1, 5, 7)])
    w4, w8 = supernet.features[4].weight, supernet.features[8].weight
    assert torch.equal(w4[kept], before["features.4.weight"][kept] + 1.0)
    assert torch.equal(w4[removed], before["features.4.weight"][removed])
    assert torch.equal(w8[:, kept], before["features.8.weight"][:, kept] + 2.0)
    assert torch.equal(w8[:, removed], before["features.8.weight"][:, removed])


REGISTRY_MODELS = [("resnet20", (3, 16, 16)), ("vgg16", (3, 32, 32)), ("mobilenetv2", (3, 16, 16)),
                   ("lenet5", (1, 28, 28)), ("small_cnn", (1, 8, 8))]


@pytest.mark.parametrize("name,shape", REGISTRY_MODELS + [("resnet50", (3, 32, 32))])
def test_registry_models_match_masked_reference(name: str, shape: tuple[int, int, int]) -> None:
    models = pytest.importorskip("prunekit.models")
    torch.manual_seed(0)
    supernet = models.create_model(name, num_classes=10, in_channels=shape[0]).double().eval()
    for module in supernet.modules():
        if isinstance(module, nn.BatchNorm2d):
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    groups = channel_groups(supernet, inputs(1, 0, shape))
    plan = random_plan(groups, 7)
    subnet = materialize(supernet, plan, groups)
    check_shape_attributes(subnet)
    reference = copy.deepcopy(supernet)
    install_masks(reference, groups, plan, inputs(16, 99, shape))
    x = inputs(2, 1, shape)
    with torch.no_grad():
        assert (subnet(x) - reference(x)).abs().max().item() < 1e-9
