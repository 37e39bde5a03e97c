"""MACs and FLOPs of one forward pass, counted by `torch.utils.flop_counter.FlopCounterMode`.

Conventions (everywhere in prunekit): FLOPs = 2 x MACs, and both are per SAMPLE (the batch is divided out).
FlopCounterMode counts the multiply-accumulates of matrix products and convolutions (aten mm/addmm/bmm/baddbmm,
convolution, attention), each as 2 FLOPs. It does not count batch norm, activations, pooling, element-wise
additions (residuals, biases) or the softmax. Those are a small share of a CNN's work; this is the convention of
most pruning papers ("conv + fc MACs"), and it matches thop/fvcore once their BN and pooling counts are left out.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from prunekit.measure._modes import eval_mode


def count_macs(model: nn.Module, example_inputs: torch.Tensor) -> int:
    """MACs per sample of one forward pass of `model` on `example_inputs` (a batch; eval mode, no grad).

    The model's weights, buffers (BN running statistics) and train/eval flags are left as they were.
    """
    batch_size = int(example_inputs.shape[0])
    if batch_size < 1:
        raise ValueError("example_inputs must hold at least one sample")
    counter = FlopCounterMode(display=False)
    with eval_mode(model), torch.no_grad(), counter:
        model(example_inputs)
    return counter.get_total_flops() // 2 // batch_size


def count_flops(model: nn.Module, example_inputs: torch.Tensor) -> int:
    """FLOPs per sample of one forward pass: 2 x `count_macs`."""
    return 2 * count_macs(model, example_inputs)
