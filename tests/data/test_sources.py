import hashlib

import numpy as np
import pytest
import torch

from prunekit.config import DataConfig
from prunekit.data import load_data
from prunekit.data.synthetic import load_synthetic
from prunekit.errors import UserError


def fingerprints(dataset):
    return [hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in dataset.images]


def synthetic_cfg(**kwargs):
    return DataConfig(name="synthetic", synthetic_size=300, synthetic_shape=(1, 6, 6), num_classes=3, **kwargs)


def test_val_split_is_stratified_disjoint_and_seeded():
    full, _ = load_synthetic(300, (1, 6, 6), num_classes=3)
    splits = load_data(synthetic_cfg(val_fraction=0.2))
    assert splits.val is not None and len(splits.val) == 60 and len(splits.train) == 240
    train_ids, val_ids, full_ids = fingerprints(splits.train), fingerprints(splits.val), fingerprints(full)
    assert len(set(full_ids)) == 300  # noisy images are all distinct, so fingerprints identify samples
    assert set(train_ids).isdisjoint(val_ids)
    assert sorted(train_ids + val_ids) == sorted(full_ids)
    assert torch.bincount(splits.val.labels).tolist() == [20, 20, 20]
    again = load_data(synthetic_cfg(val_fraction=0.2))
    assert torch.equal(again.val.images, splits.val.images)
    # normalisation statistics come from what is left for training
    values = splits.train.images.numpy() / 255.0
    assert splits.mean == pytest.approx((values.mean(),), abs=1e-12)
    assert splits.std == pytest.approx((values.std(),), abs=1e-12)


def test_subsets_are_stratified_seeded_subsets():
    full, full_test = load_synthetic(300, (1, 6, 6), num_classes=3)
    splits = load_data(synthetic_cfg(train_subset=30, test_subset=9, val_fraction=0.1))
    assert len(splits.train) == 27 and len(splits.val) == 3 and len(splits.test) == 9
    assert torch.bincount(splits.test.labels, minlength=3).tolist() == [3, 3, 3]
    assert torch.bincount(torch.cat([splits.train.labels, splits.val.labels]), minlength=3).tolist() == [10] * 3
    assert set(fingerprints(splits.train)) <= set(fingerprints(full))
    assert set(fingerprints(splits.test)) <= set(fingerprints(full_test))
    assert len(load_data(synthetic_cfg(train_subset=10_000)).train) == 300


def test_config_mistakes_are_user_errors():
    with pytest.raises(UserError, match="unknown data source 'cifar1O'"):
        load_data(DataConfig(name="cifar1O"))
    with pytest.raises(UserError, match="num_classes is 5 but digits has 10"):
        load_data(DataConfig(name="digits", num_classes=5))
    with pytest.raises(UserError, match="leaves an empty split"):
        load_data(DataConfig(name="synthetic", synthetic_size=2, num_classes=2, val_fraction=0.1))
    with pytest.raises(UserError, match="does not exist"):
        load_data(DataConfig(name="cifar10", path="/nonexistent/cifar"))


def test_digits_mean_std_match_numpy():
    splits = load_data(DataConfig(name="digits"))
    values = splits.train.images.numpy().astype(np.float64) / 255.0
    assert splits.mean[0] == pytest.approx(values.mean(), abs=1e-12)
    assert splits.std[0] == pytest.approx(values.std(), abs=1e-12)
