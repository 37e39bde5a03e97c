"""Training FLOPs of a sparse network (RigL's cost model, Evci et al. 2020, §4 and Appendix H).

A layer whose weight has density d costs d x its dense MACs (forward, and each of the two backward products);
everything else (layers without a mask) is dense. With f_S the sparse and f_D the dense forward FLOPs per
sample, a sparse training step costs 3 f_S; a step that also needs the dense gradient (RigL's growth) costs
2 f_S + f_D, so over one update period RigL averages (3 f_S dT + 2 f_S + f_D) / (dT + 1).

Per sample, like `prunekit.measure.macs` (FLOPs = 2 MACs). The training-cost ledger
(`prunekit.measure.ledger`) counts the dense MACs of the architecture it trains; these functions are what a
sparse method reports beside it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from prunekit.measure._modes import eval_mode
from prunekit.measure.ledger import FLOPS_PER_MAC

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def layer_macs(model: nn.Module, example_inputs: torch.Tensor) -> dict[str, int]:
    """Forward MACs per sample of every Conv/Linear layer, keyed by its weight's parameter name."""
    out: dict[str, int] = {}
    handles = []
    batch = int(example_inputs.shape[0])

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            weight = module.weight
            per_output = weight[0].numel()  # (in / groups) * kernel for a conv, in_features for a Linear
            out[name] = out.get(name, 0) + output.numel() // batch * per_output
        return record

    for module_name, module in model.named_modules():
        if isinstance(module, _LAYERS):
            handles.append(module.register_forward_hook(hook(f"{module_name}.weight" if module_name else "weight")))
    try:
        with eval_mode(model), torch.no_grad():
            model(example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return out


def sparse_forward_macs(total_macs: int, macs: Mapping[str, int], densities: Mapping[str, float]) -> float:
    """Forward MACs per sample with the layers in `densities` sparse: total - sum (1 - d_l) MACs_l."""
    return total_macs - sum((1.0 - d) * macs[name] for name, d in densities.items() if name in macs)


def sparse_step_flops(sparse_macs: float, dense_macs: float, dense_gradient: bool) -> float:
    """Training FLOPs per sample of one step: 3 f_S, or 2 f_S + f_D when the dense gradient is computed."""
    f_s, f_d = FLOPS_PER_MAC * sparse_macs, FLOPS_PER_MAC * dense_macs
    return 2 * f_s + f_d if dense_gradient else 3 * f_s


def rigl_amortised_flops(sparse_macs: float, dense_macs: float, update_every: int) -> float:
    """RigL's average training FLOPs per sample and step: (3 f_S dT + 2 f_S + f_D) / (dT + 1)."""
    f_s, f_d = FLOPS_PER_MAC * sparse_macs, FLOPS_PER_MAC * dense_macs
    return (3 * f_s * update_every + 2 * f_s + f_d) / (update_every + 1)


__all__ = ["layer_macs", "rigl_amortised_flops", "sparse_forward_macs", "sparse_step_flops"]
