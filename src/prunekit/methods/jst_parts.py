"""Parts of Joint Search-and-Training (Lu et al., IJCAI 2020; `methods/jst.py`), each usable and tested alone:
the per-filter factor of Eq. 6, the perturbed cumulative-threshold sampling of Alg. 1, ThresNet (Eq. 2) and the
REINFORCE objective of Eq. 3-4, and the fold of the factors into the network before fine-tuning.

(They live here rather than in `prunekit.criteria` because that package was being re-laid out when JST was added.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


# ---------------------------------------------------------------------------------------------- Eq. 6
def alpha_factor(alpha: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The factor each kept filter's output is multiplied by: c * softmax(alpha[index]), c = len(index).

    Eq. 6 multiplies filter c by softmax(alpha^l)_c. We scale it by the layer width so that equal alphas give
    factor 1 (the layer's mean scale does not shrink by 1/C_l; a constant per-layer scale is absorbed by the next
    BatchNorm in training anyway, so only the relative factors matter). In a sub-network the softmax runs over
    the kept filters' alphas p^l (Alg. 1 line 6), which is what Eq. 9 trains."""
    kept = alpha.index_select(0, index)
    return kept.numel() * torch.softmax(kept, dim=0)


# ---------------------------------------------------------------------------------------------- Alg. 1
def gumbel_noise(size: int, generator: torch.Generator) -> torch.Tensor:
    """Standard Gumbel noise -log(-log U), float64 (the perturbation of Alg. 1 line 1, as in the authors'
    TPAMI code `sample_from_alpha_adaptive`, which scales log(-log U) by 0.05)."""
    u = torch.rand(size, generator=generator, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12)
    return -torch.log(-torch.log(u))


def perturbed_shares(alpha: torch.Tensor, noise: torch.Tensor, noise_scale: float) -> torch.Tensor:
    """n-hat^l = softmax(alpha^l + noise_scale * noise) (Alg. 1 lines 1-2), float64 on the CPU."""
    n = alpha.detach().to("cpu", torch.float64) + noise_scale * noise
    return torch.softmax(n, dim=0)


def cumulative_keep(shares: torch.Tensor, threshold: float, min_channels: int = 1) -> list[int]:
    """Alg. 1 lines 3-7: sort the shares in decreasing order and keep filters until their cumulative share
    reaches `threshold` (the smallest prefix with sum >= threshold); at least `min_channels`, at most all.
    Ties in the sort go to the lower index. Returns the kept filter indices, increasing."""
    size = shares.numel()
    order = sorted(range(size), key=lambda i: (-float(shares[i]), i))
    total = 0.0
    count = size
    for position, index in enumerate(order):
        total += float(shares[index])
        if total >= threshold:
            count = position + 1
            break
    count = max(min(min_channels, size), count)
    return sorted(order[:count])


# ---------------------------------------------------------------------------------------------- ThresNet
class ThresNet(nn.Module):
    """Phi of Eq. 2: each layer's alpha vector -> a distribution over per-layer thresholds.

    One input head per distinct layer width maps the (sorted, width-scaled) softmax of alpha^l to `hidden`
    features (the note: every width projected to 128); a shared head maps the concatenated per-layer features
    to one categorical distribution per layer over `choices` (discrete thresholds, as in the authors' TPAMI code,
    so that pi(beta^l | alpha^l) is a probability REINFORCE can differentiate)."""

    def __init__(self, widths: Sequence[int], n_choices: int, hidden: int = 128) -> None:
        super().__init__()
        self.widths = list(widths)
        self.n_choices = n_choices
        self.heads = nn.ModuleDict({str(w): nn.Linear(w, hidden) for w in sorted(set(self.widths))})
        self.shared = nn.Linear(hidden * len(self.widths), n_choices * len(self.widths))

    @staticmethod
    def features(alpha: torch.Tensor) -> torch.Tensor:
        """The input of one layer: C_l * softmax(alpha^l), sorted decreasing (filter order carries no meaning)."""
        shares = alpha.numel() * torch.softmax(alpha.detach().float(), dim=0)
        return torch.sort(shares, descending=True).values

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits of shape (layers, choices) for one network state (one feature vector per layer)."""
        hidden = [torch.relu(self.heads[str(w)](x)) for w, x in zip(self.widths, inputs, strict=True)]
        return self.shared(torch.cat(hidden)).view(len(self.widths), self.n_choices)


def sample_actions(logits: torch.Tensor, generator: torch.Generator) -> list[int]:
    """One threshold choice per layer from softmax(logits) (rows: layers)."""
    probs = torch.softmax(logits.detach().double(), dim=1)
    return [int(torch.multinomial(row, 1, generator=generator)) for row in probs]


def log_prob(logits: torch.Tensor, actions: Sequence[int]) -> torch.Tensor:
    """sum_l log pi(beta^l | alpha^l) of the chosen actions (the inner sum of Eq. 4)."""
    log_p = torch.log_softmax(logits, dim=1)
    return log_p[torch.arange(len(actions)), torch.as_tensor(list(actions))].sum()


def reward(loss: float, size: float, gamma: float) -> float:
    """R = -(l_avg + gamma * size(S)) (Eq. 3)."""
    return -(loss + gamma * size)


def reinforce_loss(log_probs: Sequence[torch.Tensor], rewards: Sequence[float], baseline: float) -> torch.Tensor:
    """The loss whose gradient is minus the estimate of Eq. 4 with a baseline:
    -(1/K) sum_k (R_k - b) sum_l grad log pi(beta^l_k | alpha^l_k). `log_probs[k]` is already summed over
    layers (`log_prob`). The baseline (a running mean of past rewards, the advantage of the TPAMI code) does not
    bias the estimate and lowers its variance."""
    terms = [(r - baseline) * lp for lp, r in zip(log_probs, rewards, strict=True)]
    return -torch.stack(terms).sum() / len(terms)


# ---------------------------------------------------------------------------------------------- the fold
@torch.no_grad()
def fold_factor_(module: nn.Module, positions: torch.Tensor, factor: torch.Tensor) -> None:
    """Scale the outputs `positions` of `module` by `factor` in its parameters, so that the network without the
    alpha hooks computes what it computed with them: a BatchNorm's weight and bias (f * (gamma x + beta)), or a
    conv / linear's output rows and bias. Exact, in train and eval mode."""
    factor = factor.detach().to(module.weight.device, module.weight.dtype)
    if isinstance(module, _BatchNorm):
        module.weight[positions] *= factor
        module.bias[positions] *= factor
        return
    shape = (-1,) + (1,) * (module.weight.dim() - 1)
    module.weight[positions] *= factor.view(shape)
    if getattr(module, "bias", None) is not None:
        module.bias[positions] *= factor


__all__ = ["ThresNet", "alpha_factor", "cumulative_keep", "fold_factor_", "gumbel_noise", "log_prob",
           "perturbed_shares", "reinforce_loss", "reward", "sample_actions"]
