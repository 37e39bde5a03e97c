import numpy as np
import pytest
import torch

from prunekit.data.dataset import DataSplits, ImageDataset, channel_stats
from prunekit.errors import UserError


def make(n=6, c=3, h=4, w=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    return ImageDataset(images, labels, [f"c{i}" for i in range(classes)])


def test_properties_and_select():
    ds = make()
    assert len(ds) == 6 and ds.num_classes == 3 and ds.shape == (3, 4, 5)
    part = ds.select(torch.tensor([4, 1]))
    assert torch.equal(part.images, ds.images[[4, 1]])
    assert part.labels.tolist() == [1, 1]
    splits = DataSplits(train=ds, test=part, val=None, mean=(0.5,) * 3, std=(0.2,) * 3)
    assert splits.num_classes == 3 and splits.shape == (3, 4, 5)


@pytest.mark.parametrize("bad", [
    dict(images=torch.zeros(2, 1, 3, 3)),  # float, not uint8
    dict(images=torch.zeros(2, 3, 3, dtype=torch.uint8)),  # 3-D
    dict(labels=torch.tensor([0, 1], dtype=torch.int32)),
    dict(labels=torch.tensor([0, 1, 1])),  # length mismatch
    dict(labels=torch.tensor([0, 2])),  # out of range for 2 classes
    dict(classes=[]),
])
def test_invalid_datasets_are_user_errors(bad):
    args = dict(images=torch.zeros(2, 1, 3, 3, dtype=torch.uint8), labels=torch.tensor([0, 1]), classes=["a", "b"])
    args.update(bad)
    with pytest.raises(UserError):
        ImageDataset(**args)


def test_channel_stats_matches_numpy():
    ds = make(n=40, c=3, h=7, w=6)
    mean, std = channel_stats(ds.images)
    values = ds.images.numpy().astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, values.mean(axis=(0, 2, 3)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, values.std(axis=(0, 2, 3)), rtol=0, atol=1e-12)


def test_channel_stats_constant_channel_gets_unit_std():
    images = torch.full((3, 1, 2, 2), 51, dtype=torch.uint8)
    mean, std = channel_stats(images)
    assert mean == pytest.approx((0.2,)) and std == (1.0,)
