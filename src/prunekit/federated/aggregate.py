"""Server-side aggregation of sparse client models, in NumPy (research note 6.4, FedDST `dst.py`).

Arrays travel as one flat mapping: the weights under their state_dict names and each weight's bool mask under
MASK_PREFIX + name. For a masked weight w with client masks m_k and sample counts n_k:

    num = sum_k n_k m_k w_k,   den = sum_k n_k m_k,   votes = sum_k m_k
    keep = votes >= max(1, min_votes)          (min_votes 0 or 1: the union of the client masks)
    w = num / den where keep, 0 elsewhere;  mask = keep

then `reprune` keeps the largest |w| of each masked tensor down to the target density. Unmasked float tensors
(biases, norm layers, running statistics) are plainly sample-weighted averages. Every array keeps its dtype:
floats are averaged in float64 and cast back, integer buffers (num_batches_tracked) are rounded averages, bool
arrays stay bool (Flower's default `aggregate_arrayrecords` would turn all of them into float averages).

Departure from FedDST: `min_votes` counts clients; FedDST thresholds the sample-weighted `den` (so its
`--min-votes` is in samples, a quirk).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MASK_PREFIX = "mask/"

Arrays = dict[str, np.ndarray]


@dataclass
class ClientUpdate:
    """One client's reply: its arrays (weights and masks) and its number of training samples."""

    arrays: Mapping[str, np.ndarray]
    num_examples: int


def split_masks(arrays: Mapping[str, np.ndarray]) -> tuple[Arrays, Arrays]:
    """(weights, masks by weight name) of a flat mapping."""
    weights = {k: v for k, v in arrays.items() if not k.startswith(MASK_PREFIX)}
    masks = {k[len(MASK_PREFIX):]: v.astype(bool) for k, v in arrays.items() if k.startswith(MASK_PREFIX)}
    return weights, masks


def join_masks(weights: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray]) -> Arrays:
    return {**weights, **{MASK_PREFIX + k: np.asarray(v, dtype=bool) for k, v in masks.items()}}


def _plain_average(values: Sequence[np.ndarray], shares: np.ndarray) -> np.ndarray:
    dtype = values[0].dtype
    mean = sum(s * v.astype(np.float64) for s, v in zip(shares, values, strict=True))
    if dtype == np.bool_:
        return mean >= 0.5
    if np.issubdtype(dtype, np.integer):
        return np.rint(mean).astype(dtype)
    return mean.astype(dtype)


def masked_average(updates: Sequence[ClientUpdate], min_votes: int = 0) -> tuple[Arrays, Arrays]:
    """(weights, masks): the FedDST aggregation above, before the re-prune."""
    if not updates:
        raise ValueError("nothing to aggregate")
    n = np.array([u.num_examples for u in updates], dtype=np.float64)
    shares = n / n.sum()
    parts = [split_masks(u.arrays) for u in updates]
    weights, masks = parts[0]
    out_w: Arrays = {}
    out_m: Arrays = {}
    for name, first in weights.items():
        values = [p[0][name] for p in parts]
        if name not in masks:
            out_w[name] = _plain_average(values, shares)
            continue
        held = [p[1].get(name, np.ones(first.shape, bool)) for p in parts]
        num = sum(nk * m * v.astype(np.float64) for nk, m, v in zip(n, held, values, strict=True))
        den = sum(nk * m for nk, m in zip(n, held, strict=True))
        votes = sum(m.astype(np.int64) for m in held)
        keep = (votes >= max(1, min_votes)) & (den > 0)
        out_w[name] = np.where(keep, num / np.where(den > 0, den, 1.0), 0.0).astype(first.dtype)
        out_m[name] = keep
    return out_w, out_m


def target_count(numel: int, density: float) -> int:
    return int(round(density * numel))


def reprune(weights: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray], density: float
            ) -> tuple[Arrays, Arrays]:
    """Keep, per masked tensor, the round(density * numel) largest |w| among its active positions (all of them
    when fewer are active); weights outside the new mask become 0. Ties go to the lower flat index."""
    out_w, out_m = dict(weights), {}
    for name, mask in masks.items():
        w = np.asarray(weights[name])
        keep = target_count(mask.size, density)
        if int(mask.sum()) > keep:
            score = np.where(mask.ravel(), np.abs(w.astype(np.float64).ravel()), -1.0)
            order = np.argsort(-score, kind="stable")[:keep]
            new = np.zeros(mask.size, bool)
            new[order] = True
            mask = new.reshape(mask.shape)
        out_m[name] = mask.astype(bool)
        out_w[name] = np.where(mask, w, 0).astype(w.dtype)
    return out_w, out_m


def aggregate(updates: Sequence[ClientUpdate], density: float, min_votes: int = 0) -> Arrays:
    """The new global flat mapping: masked average, union / min_votes, re-prune to `density`."""
    weights, masks = masked_average(updates, min_votes)
    if masks:
        weights, masks = reprune(weights, masks, density)
    return join_masks(weights, masks)
