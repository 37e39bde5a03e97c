import gzip
import struct

import numpy as np
import pytest

from prunekit.config import DataConfig
from prunekit.data import load_data
from prunekit.data.idx import FASHION_MNIST_CLASSES, IMAGES_MAGIC, LABELS_MAGIC, read_idx, read_idx_dataset
from prunekit.errors import UserError


def idx_bytes(array, magic):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(directory, compress, n_train=6, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for stem, array, magic in ((f"{prefix}-images-idx3-ubyte", images, IMAGES_MAGIC),
                                   (f"{prefix}-labels-idx1-ubyte", labels, LABELS_MAGIC)):
            data = idx_bytes(array, magic)
            if compress:
                (directory / f"{stem}.gz").write_bytes(gzip.compress(data))
            else:
                (directory / stem).write_bytes(data)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip(tmp_path, compress):
    arrays = write_mnist(tmp_path / "fmnist", compress)
    train, test = read_idx_dataset(tmp_path / "fmnist", FASHION_MNIST_CLASSES)
    assert train.images.shape == (6, 1, 28, 28) and test.images.shape == (4, 1, 28, 28)
    np.testing.assert_array_equal(train.images[:, 0].numpy(), arrays["train"][0])
    np.testing.assert_array_equal(train.labels.numpy(), arrays["train"][1])
    np.testing.assert_array_equal(test.images[:, 0].numpy(), arrays["t10k"][0])
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"


def test_load_data_mnist_and_fashion(tmp_path):
    write_mnist(tmp_path / "m", compress=True)
    mnist = load_data(DataConfig(name="mnist", path=str(tmp_path / "m")))
    fashion = load_data(DataConfig(name="fashion-mnist", path=str(tmp_path / "m")))
    assert mnist.train.classes == [str(d) for d in range(10)]
    assert fashion.train.classes == FASHION_MNIST_CLASSES
    assert torch_equal(mnist.train.images, fashion.train.images)


def torch_equal(a, b):
    return bool((a == b).all())


def test_bad_magic_is_refused(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(3, np.uint8), IMAGES_MAGIC))  # image magic on a label file
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte: bad idx magic number 0x00000803"):
        read_idx(path, LABELS_MAGIC)


def test_size_mismatch_and_truncation_are_refused(tmp_path):
    path = tmp_path / "imgs"
    path.write_bytes(idx_bytes(np.zeros((2, 3, 3), np.uint8), IMAGES_MAGIC)[:-1])
    with pytest.raises(UserError, match="the file has 33 bytes"):
        read_idx(path, IMAGES_MAGIC)
    gz = tmp_path / "imgs.gz"
    gz.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 3, 3), np.uint8), IMAGES_MAGIC))[:-6])
    with pytest.raises(UserError, match="imgs.gz: cannot read"):
        read_idx(gz, IMAGES_MAGIC)


def test_label_count_mismatch_and_missing_file(tmp_path):
    write_mnist(tmp_path, compress=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5, np.uint8), LABELS_MAGIC))
    with pytest.raises(UserError, match="6 images but train-labels-idx1-ubyte has 5 labels"):
        read_idx_dataset(tmp_path, FASHION_MNIST_CLASSES)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(UserError, match="expected a directory with"):
        load_data(DataConfig(name="mnist", path=str(tmp_path)))
