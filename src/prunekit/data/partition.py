"""Splitting a dataset over K federated clients: `iid` and per-class Dirichlet(beta) label skew.

The Dirichlet scheme is FedDST's `distribute_clients_dirichlet` (and flwr-datasets' `DirichletPartitioner`;
research note section 6.1 / 7.3): draw p = Dir(beta * 1_K) once per class (a C x K matrix, row c = how class c is
shared among the clients), cut each class's indices (in increasing index order) at floor(cumsum(n_c * p_c)), give
client k the concatenation of its pieces over the classes, shuffled once. The same p splits the test set, so a
client's local test split has its training label skew. With `min_samples`, p is redrawn (flwr-datasets style, at
most `max_attempts` times) until every client has at least that many training samples. Clients left with an empty
train or test split are dropped and reported (FedDST drops them too).

Everything is a function of `seed` (FedDST's generator is unseeded; flwr-datasets seeds 42).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prunekit.errors import UserError

SCHEMES = ("iid", "dirichlet")


@dataclass
class Partition:
    """Per-client index arrays into the train and test sets; `clients[i]` is the original client number of
    entry i (dropped clients are missing), `proportions` the C x K Dirichlet matrix (None for iid)."""

    train: list[np.ndarray]
    test: list[np.ndarray]
    clients: list[int]
    dropped: list[int] = field(default_factory=list)
    proportions: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.train)

    def sizes(self) -> list[int]:
        return [len(t) for t in self.train]


def dirichlet_proportions(num_classes: int, num_clients: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """p[c, k] ~ Dir(beta * 1_K) for each class c (rows sum to 1)."""
    return rng.dirichlet(np.full(num_clients, float(beta)), size=num_classes)


def split_by_proportions(labels: np.ndarray, proportions: np.ndarray) -> list[np.ndarray]:
    """Cut each class's indices at floor(cumsum(n_c * p_c)); client k gets its pieces, in class order."""
    num_classes, num_clients = proportions.shape
    pieces: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        cuts = np.floor(np.cumsum(len(idx) * proportions[c])).astype(np.int64)[:-1]
        for k, part in enumerate(np.split(idx, np.clip(cuts, 0, len(idx)))):
            pieces[k].append(part)
    return [np.concatenate(p) if p else np.zeros(0, np.int64) for p in pieces]


def iid_split(n: int, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A seeded permutation of range(n) cut into K nearly equal parts."""
    return [np.sort(part) for part in np.array_split(rng.permutation(n), num_clients)]


def partition(train_labels: np.ndarray, test_labels: np.ndarray, num_clients: int, scheme: str = "dirichlet",
              beta: float = 0.5, seed: int = 0, min_samples: int = 0, max_attempts: int = 10) -> Partition:
    """Split train and test indices over `num_clients` clients (see the module docstring)."""
    if scheme not in SCHEMES:
        raise UserError(f"unknown partition scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if num_clients < 1:
        raise UserError(f"the number of clients must be positive, got {num_clients}")
    if scheme == "dirichlet" and not beta > 0:
        raise UserError(f"the Dirichlet concentration beta must be positive, got {beta}")
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    rng = np.random.default_rng(seed)
    proportions = None
    if scheme == "iid":
        train, test = iid_split(len(train_labels), num_clients, rng), iid_split(len(test_labels), num_clients, rng)
    else:
        num_classes = int(max(train_labels.max(initial=-1), test_labels.max(initial=-1))) + 1
        for _ in range(max_attempts):
            proportions = dirichlet_proportions(num_classes, num_clients, beta, rng)
            train = split_by_proportions(train_labels, proportions)
            if min(len(t) for t in train) >= min_samples:
                break
        else:
            raise UserError(f"no Dirichlet(beta={beta}) split over {num_clients} clients gave every client "
                            f"{min_samples} samples in {max_attempts} attempts; lower min_samples or raise beta")
        test = split_by_proportions(test_labels, proportions)
        train = [rng.permutation(t) for t in train]  # one shuffle of each client's order (FedDST)
        test = [rng.permutation(t) for t in test]
    kept = [k for k in range(num_clients) if len(train[k]) and len(test[k])]
    if not kept:
        raise UserError(f"every one of the {num_clients} clients got an empty split")
    return Partition(train=[train[k] for k in kept], test=[test[k] for k in kept], clients=kept,
                     dropped=[k for k in range(num_clients) if k not in kept], proportions=proportions)
