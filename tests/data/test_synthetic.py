import torch

from prunekit.config import DataConfig
from prunekit.data import load_data
from prunekit.data.synthetic import class_patterns, load_synthetic


def test_shape_balance_and_determinism():
    train, test = load_synthetic(60, (2, 6, 7), num_classes=4, seed=3)
    assert train.images.shape == (60, 2, 6, 7) and len(test) == 15 and train.num_classes == 4
    assert torch.bincount(train.labels).tolist() == [15] * 4
    again, _ = load_synthetic(60, (2, 6, 7), num_classes=4, seed=3)
    other, _ = load_synthetic(60, (2, 6, 7), num_classes=4, seed=4)
    assert torch.equal(train.images, again.images) and torch.equal(train.labels, again.labels)
    assert not torch.equal(train.images, other.images)


def test_learnable_nearest_class_mean_beats_chance():
    splits = load_data(DataConfig(name="synthetic", synthetic_size=400, synthetic_shape=(3, 16, 16), num_classes=5))
    x_train = splits.train.images.flatten(1).float()
    centroids = torch.stack([x_train[splits.train.labels == c].mean(0) for c in range(5)])
    predictions = torch.cdist(splits.test.images.flatten(1).float(), centroids).argmin(1)
    accuracy = (predictions == splits.test.labels).float().mean().item()
    assert accuracy > 0.8  # chance is 0.2


def test_class_patterns_are_mirror_symmetric_and_distinct():
    # symmetric, so flip augmentation keeps the class pattern; smooth, so a crop shift keeps most of it
    patterns = class_patterns(3, (2, 8, 10), torch.Generator().manual_seed(0))
    assert patterns.shape == (3, 2, 8, 10)
    assert torch.equal(patterns, patterns.flip(-1))
    assert torch.cdist(patterns.flatten(1), patterns.flatten(1))[~torch.eye(3, dtype=torch.bool)].min() > 1.0
