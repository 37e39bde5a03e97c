"""A tiny lottery experiment's run config: an MLP on 256 digits, 2 epochs of SGD with momentum and weight decay
(so masked weights would regrow if the state did not keep them at zero)."""

from prunekit.config import load_config


def tiny_cfg(**train):
    cfg = load_config(None, ["data.name=digits", "data.augment=false", "data.train_subset=256",
                             "data.test_subset=128", "model.name=mlp", "model.kwargs={input_size: 8, hidden: [24]}",
                             "optim.lr=0.05", "optim.momentum=0.9", "optim.weight_decay=0.01", "train.epochs=2",
                             "train.batch_size=32", "train.progress=never", "schedule.name=cosine"])
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg
