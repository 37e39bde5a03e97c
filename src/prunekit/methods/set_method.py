"""SET, Sparse Evolutionary Training (Mocanu et al., Nat. Commun. 2018): every dT steps, drop the fraction of
each layer's active weights closest to zero (optionally sign-split, as in SET: the smallest positive and the
largest negative weights separately) and grow as many uniformly at random among the inactive positions.

The schedule is RigL's comparison setting (ΔT = 100, cosine drop fraction, T_end = 3/4 of training, no optimizer
step on an update iteration; RigL's SparseSETOptimizer does the same); original SET updates once per epoch with a
constant ζ = 0.3 (`update_every` = steps per epoch, `drop_schedule: constant`, `end_fraction: 1`,
`drop: sign_split`). Grown weights start at zero (the Keras mask implementation and RigL), not randn/10."""

from __future__ import annotations

import dataclasses
from typing import Literal

from prunekit.methods import METHODS
from prunekit.methods.dst_base import DSTParams, DynamicSparseMethod
from prunekit.methods.params import param


@dataclasses.dataclass
class SETParams(DSTParams):
    """method.params of `set`: those of every DST method, growing at random by default."""

    growth: Literal["gradient", "random"] = param("random", "grow uniformly at random (SET) or by the largest "
                                                            "dense-gradient magnitude (that is RigL)")


@METHODS.register("set")
class SET(DynamicSparseMethod):
    """Magnitude drop, random growth."""

    name = "set"
    summary = "drop the smallest |w|, regrow as many connections at random (Sparse Evolutionary Training)"
    paper = ('Mocanu et al., "Scalable training of artificial neural networks with adaptive sparse '
             'connectivity inspired by network science", Nat. Commun. 2018')
    Params = SETParams
