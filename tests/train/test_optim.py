import torch
from torch import nn

from prunekit.channels import load_optimizer_state_by_name, optimizer_state_by_name
from prunekit.config import OptimConfig
from prunekit.train.optim import build_optimizer, flatten_optimizer_state, unflatten_optimizer_state


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def step(model, opt):
    loss = model(torch.randn(2, 1, 6, 6)).square().sum()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_bn_and_bias_excluded_from_decay():
    opt = build_optimizer(net(), OptimConfig(decay_bn_and_bias=False, weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])


def test_state_by_name_round_trip_continues_identically():
    for name in ("sgd", "adam", "adamw"):
        cfg = OptimConfig(name=name, lr=0.01)
        a = net()
        opt_a = build_optimizer(a, cfg)
        torch.manual_seed(1)
        step(a, opt_a)
        tensors, scalars = flatten_optimizer_state(optimizer_state_by_name(opt_a, a))
        b = net()
        b.load_state_dict(a.state_dict())
        opt_b = build_optimizer(b, cfg)
        load_optimizer_state_by_name(opt_b, b, unflatten_optimizer_state(tensors, scalars))
        torch.manual_seed(2)
        step(a, opt_a)
        torch.manual_seed(2)
        step(b, opt_b)
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa, pb), name
