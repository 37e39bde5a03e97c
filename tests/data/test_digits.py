import numpy as np
import torch
from sklearn.datasets import load_digits

from prunekit.config import DataConfig
from prunekit.data import load_data
from prunekit.data.digits import load_digits_splits


def test_digits_split_scaling_and_stratification():
    train, test = load_digits_splits()
    bunch = load_digits()
    assert len(train) + len(test) == len(bunch.target) == 1797
    assert len(test) == round(0.2 * 1797)
    assert train.shape == (1, 8, 8) and train.classes == [str(d) for d in range(10)]
    # every image is the original 0..16 image scaled to 0..255 (checked on the multiset of flattened images)
    expected = {(tuple(np.rint(img.ravel() * 255 / 16).astype(int)), int(t)) for img, t in
                zip(bunch.images, bunch.target, strict=True)}
    got = {(tuple(img.ravel().tolist()), int(t)) for ds in (train, test)
           for img, t in zip(ds.images.numpy(), ds.labels.numpy(), strict=True)}
    assert got == expected
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    # stratified: every class's test share within one image of 20 %
    class_sizes = np.bincount(bunch.target)
    test_sizes = torch.bincount(test.labels, minlength=10).numpy()
    assert np.all(np.abs(test_sizes - 0.2 * class_sizes) <= 1)


def test_digits_is_deterministic_and_the_default():
    a = load_data(DataConfig())
    b = load_data(DataConfig(name="digits"))
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
