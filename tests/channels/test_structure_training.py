"""Issue 16, item 7: one end-to-end trainer decision on each zoo structure.

For each structure a `SupernetState` trains a few SGD-with-momentum steps on the full model, applies a Decision
whose plan halves every prunable group, and trains a few more steps on the subnet. The independent reference is
the same training on a copy of the full model: plain dense steps first, then `masked_reference.MaskedTrainer`
(removed channels masked to zero and frozen, no prunekit slicing). Both must give the same outputs in float64.
Structures whose only group is blocked by a channel-mixing op refuse with a one-line UserError before training.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import zoo
from masked_reference import MaskedTrainer, install_masks
from torch import nn
from zoo import INPUT_SHAPE, build, build_structure

import prunekit
from prunekit import io
from prunekit.channels import ChannelPlan, plan_macs
from prunekit.config import load_config
from prunekit.errors import UserError
from prunekit.measure import count_macs
from prunekit.methods.base import Decision
from prunekit.train.loop import evaluate
from prunekit.train.supernet import SupernetState
from prunekit.train.trainer import Trainer

STEPS = 3
LR, MOMENTUM = 0.05, 0.9

# structure -> (builder, the group that carries what is special about it: it must be found and pruned)
STRUCTURES: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "grouped": (lambda: build("grouped"), "features.3"),  # the groups=2 conv's output
    "resnext": (lambda: build_structure("resnext"), "layer.0.conv2"),  # the grouped 3x3 conv's output
    "convnext": (lambda: build_structure("convnext"), "stem.0"),  # stream through LayerNorm(2d) and layer scale
    "checkpoint_dense": (lambda: build_structure("checkpoint_dense"), "layers.0.conv1"),  # under checkpoint
    "shuffle_view": (lambda: build_structure("shuffle_view"), "units.0.branch.0"),  # chunk + view/transpose
    "shuffle_permute": (lambda: build_structure("shuffle_permute"), "units.0.branch.0"),  # slices + permute
    "glu_chunk": (lambda: build_structure("glu_chunk"), "conv2"),  # chunk halves gate each other
    "softmax": (lambda: build_structure("softmax"), "conv1"),  # conv2 blocked; its neighbours still prune
    "mean_center": (lambda: build_structure("mean_center"), "conv1"),
    "shift_op": (lambda: build_structure("shift_op"), "conv1"),
}


def batches(count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, *INPUT_SHAPE, generator=generator, dtype=torch.float64),
             torch.randint(0, 5, (4,), generator=generator)) for _ in range(count)]


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)


def halving_plan(state: SupernetState, seed: int) -> ChannelPlan:
    """Keep a random half (at least one) of every prunable group."""
    generator = torch.Generator().manual_seed(seed)
    return ChannelPlan({g.name: sorted(torch.randperm(g.size, generator=generator)[:max(1, g.size // 2)].tolist())
                        for g in state.groups})


def state_step(state: SupernetState, x: torch.Tensor, y: torch.Tensor) -> None:
    state.zero_grad()
    nn.functional.cross_entropy(state.train_module(x), y).backward()
    state.step()


def dense_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def max_difference(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_decision_then_training_equals_masked_frozen_reference(name: str) -> None:
    make, special = STRUCTURES[name]
    supernet = make().train()
    reference = copy.deepcopy(supernet)
    example = batches(1, 0)[0][0][:2]
    state = SupernetState(supernet, example, "all", make_optimizer=sgd)
    assert special in {g.name for g in state.groups}
    reference_optimizer = sgd(reference)
    before, after = batches(STEPS, seed=1), batches(STEPS, seed=2)
    for x, y in before:  # dense phase: every channel gets a momentum buffer
        state_step(state, x, y)
        dense_step(reference, reference_optimizer, x, y)

    state.sync()
    plan = halving_plan(state, seed=3)
    record = state.apply(Decision(plan=plan))
    assert state.pruned and record["kept"][special] == len(plan.keep[special])
    # MACs: what the state reports is what the subnet measures, and what the plan predicts from the supernet
    assert record["macs_after"] == count_macs(state.model, example) == plan_macs(supernet, plan, state.groups,
                                                                                   example)
    assert record["macs_after"] < record["macs_before"]

    tainted = install_masks(reference, state.groups, plan, batches(1, 5)[0][0].repeat(4, 1, 1, 1).normal_())
    trainer = MaskedTrainer(reference, reference_optimizer, tainted)
    for x, y in after:
        state_step(state, x, y)
        trainer.step(x, y)

    probe = batches(1, 7)[0][0]
    # train mode (batch statistics) on copies, since a train-mode forward moves the running statistics
    assert max_difference(copy.deepcopy(state.model), copy.deepcopy(reference), probe) < 1e-9
    state.model.eval()
    reference.eval()
    assert max_difference(state.model, reference, probe) < 1e-9  # eval mode: the running statistics too
    # the subnet did train after the decision (not a comparison of two untouched models)
    assert max_difference(state.model, make().eval(), probe) > 1e-3


MIXES = {
    "softmax": lambda x: torch.softmax(x, dim=1),
    "mean_center": lambda x: x - x.mean(1, keepdim=True),
    "shift_op": lambda x: build_structure("shift_op").mix(x),  # the zoo's custom autograd function
}


@pytest.mark.parametrize("name", sorted(MIXES))
def test_blocked_structure_refuses_before_training(name: str) -> None:
    model = zoo.MixOnly(MIXES[name]).double()
    weights = copy.deepcopy(model.state_dict())
    with pytest.raises(UserError) as raised:
        SupernetState(model, batches(1, 0)[0][0][:2], "all", make_optimizer=sgd)
    assert "\n" not in str(raised.value) and "policy" in str(raised.value)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())  # nothing trained


@pytest.mark.parametrize("name", ["softmax", "mean_center", "shift_op"])
def test_decision_naming_a_blocked_group_is_refused_before_training(name: str) -> None:
    model = build_structure(name).train()
    weights = copy.deepcopy(model.state_dict())
    state = SupernetState(model, batches(1, 0)[0][0][:2], "all", make_optimizer=sgd)
    with pytest.raises(UserError, match="unknown group 'conv2'") as raised:
        state.apply(Decision(plan=ChannelPlan({"conv2": [0, 1, 2, 3]})))
    assert "\n" not in str(raised.value)
    assert not state.pruned and state.model is model
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def trainer_config(model: str, policy: str) -> object:
    return load_config(None, [
        "data.name=synthetic", "data.synthetic_size=32", "data.synthetic_shape=[3, 8, 8]", "data.num_classes=5",
        f"model.name={model}", "train.epochs=2", "train.batch_size=16", "train.threads=1",
        "method.name=l1_filter", "method.params.prune_epoch=1", "method.params.rate=0.5",
        f"method.params.policy={policy}"])


@pytest.mark.parametrize("factory,policy", [("resnext_net", "all"), ("convnext_net", "internal"),
                                            ("shuffle_view_net", "all")])
def test_trainer_l1_filter_on_a_user_factory_structure_finishes_and_loads(tmp_path, factory: str,
                                                                          policy: str) -> None:
    run = tmp_path / "run"
    trainer = Trainer(trainer_config(f"zoo:{factory}", policy), run, quiet=True)
    summary = trainer.fit()
    records = io.read_jsonl(run / "metrics.jsonl")
    (decision,) = [r for r in records if r["kind"] == "decision"]
    assert decision["macs_after"] < decision["macs_before"]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [0, 1]
    loaded = prunekit.load(run, model_fn=getattr(zoo, factory))
    x = torch.randn(2, *INPUT_SHAPE)
    with torch.no_grad():
        assert torch.equal(loaded(x), trainer.state.model.eval()(x))  # bitwise the model the run ended with
    assert evaluate(loaded, trainer.test_loader) == pytest.approx((summary["test_loss"], summary["test_accuracy"]))
    # the loaded model is the decision's subnet: its measured MACs are the ones recorded after the decision
    assert count_macs(loaded, x[:1]) == decision["macs_after"]


def test_trainer_refuses_a_blocked_user_structure_before_the_run_directory(tmp_path) -> None:
    run = tmp_path / "run"
    with pytest.raises(UserError) as raised:
        Trainer(trainer_config("zoo:softmax_only_net", "all"), run, quiet=True).fit()
    assert "\n" not in str(raised.value) and "policy" in str(raised.value)
    assert not run.exists()
