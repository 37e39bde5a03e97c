"""The shared parameter checks (ChannelParams) apply to every Params class that has the key, with one message."""

import dataclasses

import pytest

from prunekit.errors import UserError
from prunekit.methods.hrank import HRankParams
from prunekit.methods.one_shot import OneShotParams
from prunekit.methods.params import ChannelParams, param
from prunekit.methods.prune_regrow import PruneRegrowParams
from prunekit.methods.prunetrain import PruneTrainParams
from prunekit.methods.slimming import SlimmingParams
from prunekit.methods.torch_pruning_baseline import TorchPruningParams

# A valid set of values for each Params class.
VALID = [
    (OneShotParams, {"prune_epoch": 1, "rate": 0.5}),
    (HRankParams, {"prune_epoch": 1}),
    (SlimmingParams, {"prune_epoch": 1}),
    (TorchPruningParams, {"prune_epoch": 1, "pruning_ratio": 0.3}),
    (PruneRegrowParams, {"sparsity": 0.5}),
    (PruneTrainParams, {}),
]


def fields(cls):
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("cls, values", VALID)
def test_shared_keys_are_checked_wherever_they_exist(cls, values):
    cls(**values)  # valid
    bad = {"policy": "everything", "min_channels": 0, "prune_epoch": -1, "target_macs_ratio": 0.0}
    for key, value in bad.items():
        if key not in fields(cls):
            continue
        if key == "target_macs_ratio":
            values = {**values, cls.amount_key: None}
        with pytest.raises(UserError, match=f"method.params.{key}"):
            cls(**{**values, key: value})


@pytest.mark.parametrize("cls, values", [(c, v) for c, v in VALID if c.amount_key is not None])
def test_exactly_one_of_the_amount_and_the_macs_target(cls, values):
    with pytest.raises(UserError, match=f"exactly one of {cls.amount_key} and target_macs_ratio"):
        cls(**{**values, "target_macs_ratio": 0.5})
    with pytest.raises(UserError, match="exactly one"):
        cls(**{**values, cls.amount_key: None})
    cls(**{**values, cls.amount_key: None, "target_macs_ratio": 0.5})


def test_a_param_needs_help_and_carries_it():
    with pytest.raises(ValueError, match="help"):
        param(1)

    @dataclasses.dataclass
    class Toy(ChannelParams):
        width: int = param(3, "how wide")
        names: list[str] = param(help="which", factory=list)

    assert [f.metadata["help"] for f in dataclasses.fields(Toy)] == ["how wide", "which"]
    assert Toy().names == [] and Toy().names is not Toy().names
