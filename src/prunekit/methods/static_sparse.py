"""Static sparse training: a random mask with uniform / ER / ERK layer densities, drawn once before the first
step and never changed (the "Static" baseline of RigL, Evci et al. 2020, Table/Fig. 2)."""

from __future__ import annotations

from prunekit.methods import METHODS
from prunekit.methods.dst_base import SparseMethod, SparseParams


@METHODS.register("static")
class StaticSparse(SparseMethod):
    """Random sparse masks (exact per-layer nonzero counts) that stay fixed for the whole run."""

    name = "static"
    summary = "a random sparse mask (uniform / ER / ERK densities) that never changes"
    paper = ('Evci et al., "Rigging the Lottery: Making All Tickets Winners", ICML 2020 (the Static baseline)')
    Params = SparseParams
