"""Federated presets load; the CPU tier departs from the note's setting only where it says; bad values and a
missing section are one-line UserErrors; the readjustment schedule (FedDST quirk 1 fixed)."""

import math
from pathlib import Path

import pytest

from prunekit.errors import UserError
from prunekit.federated.config import FederatedConfig, load_federated_config
from prunekit.federated.topology import readjust_step, round_ratio

PRESETS = Path(__file__).resolve().parents[2] / "configs" / "federated"


@pytest.mark.parametrize("path", sorted(PRESETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_presets_load(path):
    cfg, fed = load_federated_config(path)
    assert cfg.name and fed.rounds >= 1


def test_cpu_tier_matches_the_note_setting_but_for_its_budget():
    note, note_fed = load_federated_config(PRESETS / "cifar10-note.yaml")
    cpu, cpu_fed = load_federated_config(PRESETS / "cifar10-cpu.yaml")
    a, b = note.to_dict(), cpu.to_dict()
    for d in (a, b):
        d.pop("name")
        d["data"].pop("train_subset")
        d["data"].pop("test_subset")
    assert a == b
    x, y = note_fed.to_dict(), cpu_fed.to_dict()
    for d in (x, y):
        d.pop("rounds")
        d.pop("readjust_interval")
    assert x == y


def test_bad_values_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="sparsity"):
        FederatedConfig(sparsity=1.0)
    path = tmp_path / "c.yaml"
    path.write_text("data: {name: digits}\n")
    with pytest.raises(UserError, match="federated"):
        load_federated_config(path)
    path.write_text("federated: {rounds: 3, readjust_ratoi: 0.1}\n")
    with pytest.raises(UserError, match="readjust_ratio"):
        load_federated_config(path)


def test_round_ratio_is_a_single_cosine_alpha():
    fed = FederatedConfig(rounds=20, readjust_ratio=0.4, readjust_interval=2, decay_end=0.5)
    assert round_ratio(fed, 1) == 0.0  # not a readjustment round
    assert round_ratio(fed, 2) == pytest.approx(0.2 * (1 + math.cos(math.pi * 1 / 10)))
    assert round_ratio(fed, 12) == 0.0  # past T_end
    assert round_ratio(FederatedConfig(rounds=20, readjust_ratio=0.4, readjust_interval=2, ratio_decay="constant"),
                       4) == 0.4
    assert round_ratio(FederatedConfig(readjust_ratio=0.4, sparsity=0.0), 10) == 0.0
    assert readjust_step(10, 3) == 20 and readjust_step(10, 1) == 5 and readjust_step(1, 1) == 1
