"""WeightMasks: one boolean mask per weight tensor, in the supernet's (full-width) coordinates.

`SupernetState` owns the masks like it owns the channel plan (DESIGN.md, "The contract"): it keeps masked weights
at exactly zero after every optimizer step, zeroes their gradients after the method's `after_backward` has seen
the dense gradient, zeroes optimizer state at positions a new mask turns on or off, and checkpoints the masks.
With a channel plan in force, the trained subnet sees the masks sliced to its kept channels (`sliced`) and mask
changes made on the subnet are written back at the kept positions (`absorb`), like materialize / absorb do for
weights.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from prunekit import io
from prunekit.channels.surgery import KeptIndices, expected_shape, scatter_, select
from prunekit.errors import UserError


class WeightMasks(Mapping[str, torch.Tensor]):
    """Parameter name -> boolean mask of that parameter's shape (True = the weight is active).

    Parameters without a mask are dense. Masks live on the CPU or on the parameters' device; the state moves them
    where it needs them.
    """

    def __init__(self, masks: Mapping[str, torch.Tensor] | None = None) -> None:
        self._masks: dict[str, torch.Tensor] = {}
        for name, mask in (masks or {}).items():
            self._masks[name] = _as_mask(mask, name)

    # ------------------------------------------------------------------ mapping
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __repr__(self) -> str:
        return f"WeightMasks({len(self)} tensors, density {self.density():.4f})"

    def updated(self, changes: Mapping[str, torch.Tensor]) -> WeightMasks:
        """A copy with the masks in `changes` replaced (or added)."""
        return WeightMasks({**self._masks, **changes})

    # ------------------------------------------------------------------ densities
    def layer_density(self) -> dict[str, float]:
        """Fraction of active weights per masked tensor."""
        return {name: mask.float().mean().item() for name, mask in self._masks.items()}

    def active(self) -> int:
        return int(sum(int(mask.sum()) for mask in self._masks.values()))

    def total(self) -> int:
        return int(sum(mask.numel() for mask in self._masks.values()))

    def density(self) -> float:
        """Active weights over all weights of the masked tensors (1.0 when nothing is masked)."""
        total = self.total()
        return self.active() / total if total else 1.0

    # ------------------------------------------------------------------ applying
    def check(self, model: nn.Module, what: str = "weight masks") -> None:
        """UserError unless every mask names a parameter of `model` with the mask's shape."""
        params = dict(model.named_parameters())
        for name, mask in self._masks.items():
            if name not in params:
                raise UserError(f"{what} name {name!r}, which is not a parameter of the model")
            if tuple(mask.shape) != tuple(params[name].shape):
                raise UserError(f"{what}: mask {name!r} has shape {tuple(mask.shape)}, the parameter "
                                f"{tuple(params[name].shape)}")

    @torch.no_grad()
    def apply_(self, model: nn.Module) -> None:
        """Set every masked weight of `model` to exactly zero (in place)."""
        params = dict(model.named_parameters())
        for name, mask in self._masks.items():
            param = params[name]
            param.masked_fill_(~mask.to(param.device), 0.0)

    @torch.no_grad()
    def mask_gradients_(self, model: nn.Module) -> None:
        """Zero the gradients of masked weights (call after the method has read the dense gradient)."""
        params = dict(model.named_parameters())
        for name, mask in self._masks.items():
            grad = params[name].grad
            if grad is not None:
                grad.masked_fill_(~mask.to(grad.device), 0.0)

    # ------------------------------------------------------------------ channel plans
    def sliced(self, kept: KeptIndices) -> WeightMasks:
        """The masks of a subnet: each restricted to the kept positions (`channels.kept_indices`)."""
        out = {}
        for name, mask in self._masks.items():
            module_name, _, tensor_name = name.rpartition(".")
            out[name] = select(mask, kept.get((module_name, tensor_name), {}))
        return WeightMasks(out)

    def absorbed(self, sub_masks: Mapping[str, torch.Tensor], kept: KeptIndices) -> WeightMasks:
        """These (full-width) masks with a subnet's masks written back at the kept positions; removed channels
        keep the masks they had."""
        out = {name: mask.clone() for name, mask in self._masks.items()}
        for name, sub in sub_masks.items():
            module_name, _, tensor_name = name.rpartition(".")
            dims = kept.get((module_name, tensor_name), {})
            if name not in out:
                raise UserError(f"subnet mask {name!r} has no full-width mask to be written into")
            if tuple(sub.shape) != expected_shape(out[name], dims):
                raise UserError(f"subnet mask {name!r} has shape {tuple(sub.shape)}, the plan expects "
                                f"{expected_shape(out[name], dims)}")
            scatter_(out[name], _as_mask(sub, name).to(out[name].device), dims)
        return WeightMasks(out)

    # ------------------------------------------------------------------ files
    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {name: mask.cpu() for name, mask in self._masks.items()}

    def save(self, path: str | os.PathLike[str]) -> None:
        """safetensors, atomically (never pickle)."""
        io.save_tensors(path, self.to_tensors(), metadata={"kind": "prunekit.weight_masks"})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WeightMasks:
        return cls(io.load_tensors(path))


def _as_mask(mask: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise UserError(f"weight mask {name!r} is not a tensor")
    if mask.dtype == torch.bool:
        return mask.detach()
    if mask.dtype.is_floating_point or mask.dtype in (torch.uint8, torch.int8, torch.int32, torch.int64):
        values = mask.detach()
        if not bool(((values == 0) | (values == 1)).all()):
            raise UserError(f"weight mask {name!r} holds values other than 0 and 1")
        return values != 0
    raise UserError(f"weight mask {name!r} has dtype {mask.dtype}; expected bool")
