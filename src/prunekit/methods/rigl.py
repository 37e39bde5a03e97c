"""RigL, Rigging the Lottery (Evci et al., ICML 2020, Alg. 1): every ΔT = 100 steps until T_end = 3/4 of
training, each layer drops k = f(t) |active| of its smallest |w| (N(0, 1e-5^2) noise breaks ties) and grows the
k positions, among those inactive after the drop, with the largest dense-gradient magnitude; f(t) =
α/2 (1 + cos(π t / T_end)), α = 0.3. New weights start at zero with zero optimizer state, and the update
iteration takes no optimizer step. The dense gradient is read in `after_backward`, before the state masks it.
Training FLOPs follow RigL's model: 2 f_S + f_D on an update step, 3 f_S otherwise."""

from __future__ import annotations

from prunekit.methods import METHODS
from prunekit.methods.dst_base import DSTParams, DynamicSparseMethod


@METHODS.register("rigl")
class RigL(DynamicSparseMethod):
    """Magnitude drop, dense-gradient growth."""

    name = "rigl"
    summary = "drop the smallest |w|, grow where the dense gradient is largest, every dT steps until T_end"
    paper = ('Evci et al., "Rigging the Lottery: Making All Tickets Winners", ICML 2020')
    Params = DSTParams
