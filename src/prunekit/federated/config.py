"""FederatedConfig: the `federated:` section of a preset. The rest of the file is an ordinary RunConfig whose
`train.epochs` is ignored (clients train `local_epochs` per round) and whose `schedule` is stepped per round."""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from prunekit.config import RunConfig, apply_overrides, build_dataclass, read_yaml
from prunekit.config_checks import check_config
from prunekit.errors import UserError


@dataclass
class FederatedConfig:
    """FedDST settings (research note 6.3-6.4); defaults follow the note's experiment where it gives them."""

    clients: int = 10  # K clients the training data is split over (dropped empty clients are reported)
    fraction_train: float = 1.0  # fraction of clients sampled per round (without replacement)
    rounds: int = 200
    local_epochs: int = 1  # E local epochs per round (FedDST default 10; the note does not say)
    partition: Literal["iid", "dirichlet"] = "dirichlet"
    beta: float = 0.5  # Dirichlet concentration (0.1 and 0.5 in the note)
    min_samples: int = 0  # redraw the Dirichlet split until every client has this many training samples
    partition_seed: int = 0  # the split's generator (FedDST's is unseeded, the derivative uses 0)
    sparsity: float = 0.5  # target fraction of zero weights in conv / linear weights (0: dense FedAvg)
    readjust_ratio: float = 0.0  # alpha: fraction of active weights pruned and regrown (0: fixed random mask)
    readjust_interval: int = 10  # readjust every N rounds (rounds N, 2N, ...); 0: never
    ratio_decay: Literal["constant", "cosine"] = "cosine"  # alpha_t = alpha/2 (1 + cos(pi t / T_end)) or alpha
    decay_end: float = 0.75  # T_end as a fraction of rounds (derivative 3/4, FedDST 1/2); no readjust after it
    grad_batches: int = 1  # minibatches whose dense gradient is summed for growth (FedDST: 1)
    min_votes: int = 0  # a coordinate stays active when at least this many clients hold it (0 or 1: union)
    local_eval: bool = False  # also evaluate the global model on every client's local test split
    seed: int = 0  # node sampling and the initial random mask
    sim_cpus: int = 1  # CPUs Ray may use in simulation (each client gets one)

    def __post_init__(self) -> None:
        checks = [(self.clients >= 1, "clients must be >= 1"), (0 < self.fraction_train <= 1, "fraction_train "
                  "must be in (0, 1]"), (self.rounds >= 1, "rounds must be >= 1"),
                  (self.local_epochs >= 1, "local_epochs must be >= 1"), (self.beta > 0, "beta must be > 0"),
                  (0 <= self.sparsity < 1, "sparsity must be in [0, 1)"),
                  (0 <= self.readjust_ratio <= 1, "readjust_ratio must be in [0, 1]"),
                  (self.readjust_interval >= 0, "readjust_interval must be >= 0"),
                  (0 < self.decay_end <= 1, "decay_end must be in (0, 1]"),
                  (self.grad_batches >= 1, "grad_batches must be >= 1"), (self.min_votes >= 0, "min_votes must "
                  "be >= 0"), (self.min_samples >= 0, "min_samples must be >= 0"), (self.sim_cpus >= 1,
                  "sim_cpus must be >= 1")]
        for ok, text in checks:
            if not ok:
                raise UserError(f"federated.{text}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_federated(raw: dict[str, Any]) -> tuple[RunConfig, FederatedConfig]:
    """(RunConfig, FederatedConfig) from a mapping with a `federated:` section."""
    raw = copy.deepcopy(raw)
    section = raw.pop("federated", None)
    if section is None:
        raise UserError("a federated preset needs a `federated:` section (see configs/federated/)")
    fed = build_dataclass(FederatedConfig, section, prefix="federated.")
    return check_config(build_dataclass(RunConfig, raw)), fed


def load_federated_config(path: str | os.PathLike[str], overrides: list[str] | None = None
                          ) -> tuple[RunConfig, FederatedConfig]:
    """Read a federated preset, apply `--set` overrides (federated.* included), validate both parts."""
    raw = apply_overrides(read_yaml(path), list(overrides or []))
    raw.setdefault("name", Path(path).stem)
    return split_federated(raw)


def full_dict(cfg: RunConfig, fed: FederatedConfig) -> dict[str, Any]:
    """The resolved config as written to RUN/config.yaml."""
    return {**cfg.to_dict(), "federated": fed.to_dict()}
