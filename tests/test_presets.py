"""Every preset in configs/ loads, names a registered method whose parameters validate, and the CPU-tier and
quickstart presets differ from their dense preset only in `name` and `method` (so their rows compare)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prunekit.config import RunConfig, load_config
from prunekit.methods import build_method

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRESETS = sorted(CONFIGS.glob("*.yaml")) + sorted((CONFIGS / "paper").glob("*.yaml"))


def test_presets_exist():
    assert len(PRESETS) >= 20


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_preset_loads_and_its_method_parameters_validate(path):
    cfg = load_config(path)
    method = build_method(cfg.method)
    assert method.name == cfg.method.name


# Methods that need a setting the dense preset does not have, and why: JST trains its architecture parameters on a
# held-out validation split (its Alg. 2), so its presets set data.val_fraction.
METHOD_NEEDS = {"jst": [("data", "val_fraction")]}


def _comparable(path: Path) -> dict:
    settings = load_config(path).to_dict()
    settings.pop("name")
    method = settings.pop("method")
    defaults = RunConfig().to_dict()
    for section, key in METHOD_NEEDS.get(method["name"], []):
        settings[section][key] = defaults[section][key]  # compared as if left at its default
    return settings


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*-cifar10-resnet20.yaml")), ids=lambda p: p.stem)
def test_cpu_tier_presets_match_the_dense_preset(path):
    assert _comparable(path) == _comparable(CONFIGS / "cifar10-resnet20-dense.yaml")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("quickstart-*.yaml")), ids=lambda p: p.stem)
def test_quickstart_presets_match_the_dense_quickstart(path):
    assert _comparable(path) == _comparable(CONFIGS / "quickstart.yaml")
