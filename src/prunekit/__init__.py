"""prunekit: prune neural networks while they train.

    import prunekit
    groups = prunekit.channel_groups(model, example_inputs, policy="all")
    small = prunekit.compact(model, example_inputs, keep={"layer1.0.conv1": [0, 3, 5, 7]})
    model = prunekit.load("runs/my-run")             # the final (pruned) model of a run directory

    # in your own training loop (README): a method, the state that applies its decisions, optionally the loop
    method = prunekit.method("reprune", sparsity=0.5, t_prune=18, interval=2)
    state = prunekit.SupernetState(model, example_inputs, method.channel_policy, method=method,
                                   make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.05))
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from torch import nn

from prunekit.channels import ChannelPlan, channel_groups, compact
from prunekit.criteria import reprune_allocation, reprune_select
from prunekit.errors import UserError
from prunekit.methods import Decision, Method, TrainContext
from prunekit.train.loop import TrainingLoop, evaluate
from prunekit.train.supernet import SupernetState
from prunekit.weights import WeightMasks

__version__ = "0.1.0"


def method(name: str, **params: object) -> Method:
    """A registered pruning method with its parameters validated, e.g. `prunekit.method("chex", sparsity=0.5)`;
    `prunekit methods` lists them all."""
    from prunekit.config import MethodConfig
    from prunekit.methods import build_method

    return build_method(MethodConfig(name, dict(params)))


def load(run_dir: str | os.PathLike[str], model_fn: Callable[..., nn.Module] | None = None) -> nn.Module:
    """Rebuild the final model of a run directory (or of a directory holding pruned.json), in eval mode.

    Its outputs are bitwise equal to those of the model that was saved. Loading runs no code named in the run
    directory: only registry models are built from it. For a run of your own factory pass it explicitly,
    `model_fn=mypackage.models.build`; it is called as `model_fn(num_classes=, in_channels=, **kwargs)`."""
    from prunekit.channels import load_pruned_model

    path = Path(run_dir)
    model_dir = path / "model" if (path / "model" / "pruned.json").exists() else path
    if not (model_dir / "pruned.json").exists():
        raise UserError(f"{path}: no saved model (expected {path / 'model' / 'pruned.json'})")
    return load_pruned_model(model_dir, model_fn=model_fn)


__all__ = ["ChannelPlan", "Decision", "Method", "SupernetState", "TrainContext", "TrainingLoop", "UserError",
           "WeightMasks", "__version__", "channel_groups", "compact", "evaluate", "load", "method",
           "reprune_allocation", "reprune_select"]
