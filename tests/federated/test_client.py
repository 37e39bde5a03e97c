"""One client's round without Flower: masks kept, the readjustment drops and grows exactly k per tensor among
inactive positions, grown weights are trained before upload (FedDST quirk 3 fixed)."""

import numpy as np
import torch

from prunekit.config import RunConfig, build_dataclass
from prunekit.data import load_data
from prunekit.federated.aggregate import split_masks
from prunekit.federated.client import build_model, local_train, model_arrays
from prunekit.federated.config import FederatedConfig
from prunekit.federated.topology import drop_and_grow, initial_masks
from prunekit.weights import WeightMasks


def test_drop_and_grow_by_direct_sorting():
    g = torch.Generator().manual_seed(0)
    w, grad = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    mask = torch.rand(6, 5, generator=g) < 0.5
    new = drop_and_grow(w, mask, grad, 0.3)
    k = int(np.floor(0.3 * int(mask.sum())))
    active = mask.flatten().nonzero().squeeze(1)
    dropped = active[torch.argsort(w.abs().flatten()[active], stable=True)[:k]]
    after = mask.flatten().clone()
    after[dropped] = False
    cand = (~after).nonzero().squeeze(1)
    grown = cand[torch.argsort(grad.abs().flatten()[cand], descending=True, stable=True)[:k]]
    after[grown] = True
    assert torch.equal(new.flatten(), after) and int(new.sum()) == int(mask.sum())


def test_local_round_keeps_density_and_trains_grown_weights():
    cfg = build_dataclass(RunConfig, {"data": {"name": "digits", "augment": False, "train_subset": 200},
                                      "model": {"name": "small_cnn", "kwargs": {"widths": [4, 8, 8]}},
                                      "optim": {"lr": 0.05, "weight_decay": 0.0}, "schedule": {"name": "constant"},
                                      "train": {"batch_size": 32, "threads": 1}})
    fed = FederatedConfig(clients=1, rounds=4, local_epochs=2, sparsity=0.5)
    splits = load_data(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg, splits)
    masks = initial_masks(model, 0.5, seed=1)
    wm = WeightMasks({k: torch.from_numpy(v) for k, v in masks.items()})
    wm.apply_(model)
    arrays = model_arrays(model, wm)
    out, metrics = local_train(cfg, fed, splits.train, splits, arrays, server_round=1, ratio=0.3, client_id=0)
    weights, new_masks = split_masks(out)
    assert metrics["num-examples"] == 200 and metrics["connections_changed"] > 0
    for name, m in new_masks.items():
        assert m.sum() == masks[name].sum()  # exactly as many grown as dropped
        assert np.all(weights[name][~m] == 0)
        grown = m & ~masks[name]
        assert np.count_nonzero(weights[name][grown]) == grown.sum()  # trained after growth, not uploaded as 0
    fixed, _ = local_train(cfg, fed, splits.train, splits, arrays, server_round=1, ratio=0.0, client_id=0)
    for name, m in split_masks(fixed)[1].items():
        np.testing.assert_array_equal(m, masks[name])
