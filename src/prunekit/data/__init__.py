"""prunekit.data: dataset sources (CIFAR, MNIST-family, image folders, digits, synthetic) held in memory as
uint8 tensors, and `BatchLoader`, which augments and normalises whole batches on the training device.

    splits = load_data(DataConfig(name="cifar10", path="data/cifar-10-python.tar.gz"))
    loader = BatchLoader(splits.train, 128, mean=splits.mean, std=splits.std, shuffle=True, augment=True)
    for images, labels in loader.iterate(epoch):
        ...
"""

from prunekit.data.dataset import DataSplits, ImageDataset, channel_stats
from prunekit.data.loader import BatchLoader, crop_and_flip
from prunekit.data.sources import SOURCES, load_data
from prunekit.data.splits import stratified_split

__all__ = [
    "SOURCES",
    "BatchLoader",
    "DataSplits",
    "ImageDataset",
    "channel_stats",
    "crop_and_flip",
    "load_data",
    "stratified_split",
]
