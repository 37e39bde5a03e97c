"""Method modules are found by listing the package, and methods with per-model caches drop them in
`on_model_changed`."""

import sys

import torch

import prunekit.methods as methods
from prunekit.methods import METHODS
from prunekit.methods.prunetrain import PruneTrain
from prunekit.methods.slimming import NetworkSlimming, SlimmingParams
from prunekit.models import create_model

TOY = '''
from prunekit.methods import METHODS
from prunekit.methods.base import Method


@METHODS.register("toy_discovered")
class Toy(Method):
    name = "toy_discovered"
'''


def test_a_new_module_in_the_package_registers_without_editing_any_import_block(tmp_path):
    (tmp_path / "toy_discovered_method.py").write_text(TOY)
    methods.__path__.append(str(tmp_path))
    try:
        assert "toy_discovered_method" in methods.method_modules()
        methods.import_method_modules()
        assert "toy_discovered" in METHODS
    finally:
        methods.__path__.remove(str(tmp_path))
        METHODS._entries.pop("toy_discovered", None)
        sys.modules.pop("prunekit.methods.toy_discovered_method", None)


def test_every_method_module_is_imported():
    assert {"dense", "reprune", "chex", "prunetrain", "slimming", "hrank", "l1_filter", "bn_scale",
            "torch_pruning"} <= set(METHODS.names())
    assert all(f"prunekit.methods.{name}" in sys.modules for name in methods.method_modules())


def small_cnn(seed):
    torch.manual_seed(seed)
    return create_model("small_cnn", num_classes=10, in_channels=1)


def test_on_model_changed_drops_the_cached_layers_of_the_old_model():
    method = PruneTrain()
    model = small_cnn(0)
    first = method.penalty_layers(model)
    assert method.penalty_layers(model) is first  # cached while the model stays
    method.on_model_changed(model)
    again = method.penalty_layers(model)
    assert again is not first and [layer.name for layer in again] == [layer.name for layer in first]

    slimming = NetworkSlimming(SlimmingParams(prune_epoch=1))
    slimming.bn_names = ["features.bn1", "features.bn2"]
    scales = slimming.scales(model)
    assert slimming.scales(model) is scales
    other = small_cnn(1)
    slimming.on_model_changed(other)
    assert all(any(g is p for p in other.parameters()) for g in slimming.scales(other))
    assert slimming.scales(other) is not scales
