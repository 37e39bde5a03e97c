"""ITOP, In-Time Over-Parameterization (Liu, Yin, Mocanu, Pechenizkiy, ICML 2021): RigL (or SET) growth with a
larger update interval and no T_end, so that many more weights are explored over the run; reports R_s, the
fraction of the maskable weights ever active (`itop_rate` in each update record).

Defaults from the official code (Shiweiliuiiiiiii/In-Time-Over-Parameterization, sparselearning/core.py and the
README's CIFAR commands): death rate 0.5 with CosineDecay to eta_min = 0.005 over the whole run, updates until
the end, update_frequency 4000 (RigL-ITOP; 1500 for SET-ITOP, `growth: random`), and the optimizer step is taken
on update iterations too (Masking.step steps the optimizer, then prunes and grows)."""

from __future__ import annotations

import dataclasses

from prunekit.methods import METHODS
from prunekit.methods.dst_base import DSTParams, DynamicSparseMethod
from prunekit.methods.params import param


@dataclasses.dataclass
class ITOPParams(DSTParams):
    """method.params of `itop`: ITOP's schedule (no T_end, larger ΔT, death rate 0.5 with a floor)."""

    update_every: int = param(4000, "steps between mask updates (ITOP CIFAR: 4000 for RigL growth, 1500 for SET)")
    drop_fraction: float = param(0.5, "initial death rate (ITOP's --death-rate 0.5)")
    min_drop_fraction: float = param(0.005, "floor of the cosine decay (ITOP's CosineDecay eta_min)")
    end_fraction: float = param(1.0, "masks change until this fraction of training (ITOP: to the end)")
    skip_optimizer_step: bool = param(False, "ITOP steps the optimizer on update iterations too")


@METHODS.register("itop")
class ITOP(DynamicSparseMethod):
    """RigL/SET with the in-time over-parameterization schedule."""

    name = "itop"
    summary = "RigL/SET growth with a large dT and no T_end; reports R_s, the fraction of weights ever active"
    paper = ('Liu et al., "Do We Actually Need Dense Over-Parameterization? In-Time '
             'Over-Parameterization in Sparse Training", ICML 2021')
    Params = ITOPParams
