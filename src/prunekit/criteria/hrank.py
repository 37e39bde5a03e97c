"""HRank (Lin et al., CVPR 2020): a filter's importance is the average rank of the feature maps it produces.

Following the official code (research note classic_methods.md §3.1):

- the feature map is the output after conv -> BN -> ReLU. The ReLU matters: before it almost every map has
  full rank. `HRankCollector` therefore hooks a named module and applies ReLU to its output by default: hook
  the BN after each conv (or the conv when there is no BN). Hooking a ReLU module works too, since ReLU is
  idempotent. For a residual block ending in add + ReLU, hooking the last BN measures the branch's own
  output, not the sum; choose explicitly.
- ranks are estimated once, on a few batches (official default: 5 batches of 128 training images), in eval
  mode with no gradients;
- each map's rank is `torch.linalg.matrix_rank` of the H x W matrix with torch's default tolerance
  (sigma_max * max(H, W) * eps), always computed in float32, the dtype the official code ran in (half
  precision inputs are upcast, float64 ones downcast: the tolerance depends on the dtype);
- per layer, the fraction `rate` of filters with the lowest average rank is pruned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

import torch
from torch import nn

from prunekit.measure import eval_mode

DEFAULT_RANK_BATCHES = 5  # official `--limit`


def feature_map_rank(feature_maps: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) activations -> (C,) float: the rank of each H x W map, averaged over the N images."""
    if feature_maps.dim() != 4:
        shape = tuple(feature_maps.shape)
        raise ValueError(f"feature_map_rank needs (N, C, H, W) activations, got shape {shape}")
    if feature_maps.shape[0] == 0:
        raise ValueError("feature_map_rank needs at least one image")
    ranks = torch.linalg.matrix_rank(feature_maps.detach().float())
    return ranks.float().mean(dim=0)


def _first_tensor(batch: Any) -> torch.Tensor:
    """A batch is a tensor of inputs or an (inputs, labels, ...) tuple/list."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


class HRankCollector:
    """Average feature-map ranks of named modules over a few batches.

        with HRankCollector(model, ["layer1.0.bn1", "layer1.0.bn2"]) as collector:
            ranks = collector.collect(train_batches)        # {"layer1.0.bn1": (C,) tensor, ...}

    Inside the `with`, forward hooks are registered on the named modules; leaving it removes them. `collect`
    runs the model in eval mode under `torch.no_grad()` on at most `max_batches` batches and restores every
    module's own train/eval mode afterwards. Each named module must run exactly once per forward pass (a shared
    `nn.ReLU` used several times cannot be told apart: hook the BN before it instead).
    """

    def __init__(
        self,
        model: nn.Module,
        module_names: Sequence[str],
        max_batches: int | None = DEFAULT_RANK_BATCHES,
        relu: bool = True,
    ) -> None:
        modules = dict(model.named_modules())
        missing = [name for name in module_names if name not in modules]
        if missing:
            raise ValueError(f"hrank: no module named {missing[0]!r} in the model")
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"max_batches must be >= 1, got {max_batches}")
        self.model = model
        self.modules = {name: modules[name] for name in module_names}
        self.max_batches = max_batches
        self.relu = relu
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._rank_sums: dict[str, torch.Tensor] = {}
        self._image_counts: dict[str, int] = {}
        self._calls: dict[str, int] = {}

    def __enter__(self) -> HRankCollector:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook_for(name)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook_for(self, name: str) -> Callable[[nn.Module, Any, torch.Tensor], None]:
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            self._calls[name] = self._calls.get(name, 0) + 1
            maps = torch.relu(output) if self.relu else output
            ranks = feature_map_rank(maps)
            self._rank_sums[name] = self._rank_sums.get(name, 0) + ranks.double() * maps.shape[0]
            self._image_counts[name] = self._image_counts.get(name, 0) + maps.shape[0]

        return hook

    def collect(self, batches: Iterable[Any]) -> dict[str, torch.Tensor]:
        """Run the batches (tensors or (inputs, labels) pairs) and return {module name: (C,) average rank}."""
        if not self._handles:
            raise RuntimeError("use HRankCollector inside a `with` block")
        self._rank_sums.clear()
        self._image_counts.clear()
        param = next(self.model.parameters(), None)
        device = param.device if param is not None else None
        with eval_mode(self.model), torch.no_grad():
            for index, batch in enumerate(batches):
                if self.max_batches is not None and index >= self.max_batches:
                    break
                self._calls.clear()
                inputs = _first_tensor(batch)
                self.model(inputs if device is None else inputs.to(device))
                self._check_each_ran_once()
        if not self._image_counts:
            raise ValueError("hrank: no batches to estimate feature-map ranks from")
        return {name: (self._rank_sums[name] / self._image_counts[name]).float() for name in self.modules}

    def _check_each_ran_once(self) -> None:
        for name in self.modules:
            calls = self._calls.get(name, 0)
            if calls != 1:
                raise ValueError(
                    f"hrank: module {name!r} ran {calls} times in one forward pass; hook a module that runs"
                    " exactly once (e.g. the BN after the conv)"
                )


def collect_feature_map_ranks(
    model: nn.Module,
    module_names: Sequence[str],
    batches: Iterable[Any],
    max_batches: int | None = DEFAULT_RANK_BATCHES,
    relu: bool = True,
) -> dict[str, torch.Tensor]:
    """One-call form of `HRankCollector`: {module name: (C,) average feature-map rank}."""
    with HRankCollector(model, module_names, max_batches, relu) as collector:
        return collector.collect(batches)


def hrank_keep(ranks: torch.Tensor, n_prune: int, min_channels: int = 1) -> list[int]:
    """Ascending indices kept after pruning the `n_prune` filters with the lowest average rank (HRank prunes
    n_prune = floor(rate * F) of a layer's F filters: `prune_count`).

    Ties are broken by index: among equal ranks the lower index is pruned first (the official `np.argsort`
    leaves tie order unspecified). At least `min_channels` filters always stay (fewer are pruned then).
    """
    if ranks.dim() != 1:
        raise ValueError(f"hrank_keep needs a 1-D rank vector, got shape {tuple(ranks.shape)}")
    if min_channels < 0:
        raise ValueError(f"min_channels must be >= 0, got {min_channels}")
    filters = ranks.numel()
    if not 0 <= n_prune <= filters:
        raise ValueError(f"hrank_keep: n_prune must lie in [0, {filters}], got {n_prune}")
    n_prune = min(n_prune, filters - min(min_channels, filters))
    order = torch.sort(ranks.detach().cpu(), stable=True).indices  # ascending; ties keep index order
    return sorted(order[n_prune:].tolist())
