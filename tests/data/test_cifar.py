"""CIFAR readers against tiny batches written here in the real format (pickled dicts, protocol 2)."""

import pickle
import tarfile

import numpy as np
import pytest

from prunekit.config import DataConfig
from prunekit.data import load_data
from prunekit.data.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES, read_cifar
from prunekit.errors import UserError

PER_BATCH = 3


def _batch(rng, n, label_key, num_classes, name):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, num_classes, n).tolist()
    batch = {b"batch_label": name.encode(), label_key: labels, b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [v // 5 for v in labels]
    return batch


def write_cifar10(root, seed=0):
    """cifar-10-batches-py under root; returns (train data, train labels, test data, test labels)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = [_batch(rng, PER_BATCH, b"labels", 10, f"training batch {i} of 5") for i in range(1, 6)]
    for i, batch in enumerate(batches, start=1):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    test = _batch(rng, PER_BATCH, b"labels", 10, "testing batch 1 of 1")
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {b"label_names": [n.encode() for n in CIFAR10_CLASSES], b"num_cases_per_batch": PER_BATCH, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    train_data = np.concatenate([b[b"data"] for b in batches])
    train_labels = sum((b[b"labels"] for b in batches), [])
    return train_data, train_labels, test[b"data"], test[b"labels"]


def write_cifar100(root, seed=1):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    train = _batch(rng, 7, b"fine_labels", 100, "training batch 1 of 1")
    test = _batch(rng, 4, b"fine_labels", 100, "testing batch 1 of 1")
    (folder / "train").write_bytes(pickle.dumps(train, protocol=2))
    (folder / "test").write_bytes(pickle.dumps(test, protocol=2))
    meta = {b"fine_label_names": [n.encode() for n in CIFAR100_CLASSES],
            b"coarse_label_names": [f"super{i}".encode() for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return train[b"data"], train[b"fine_labels"], test[b"data"], test[b"fine_labels"]


def tar_gz(folder, archive):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def check_exact(train, test, expected):
    train_data, train_labels, test_data, test_labels = expected
    assert train.images.shape == (len(train_labels), 3, 32, 32)
    # CIFAR rows are the red, green, blue 32x32 planes one after another, each row-major
    np.testing.assert_array_equal(train.images.numpy().reshape(len(train_labels), -1), train_data)
    assert train.images[0, 1, 2, 3].item() == train_data[0, 1024 + 2 * 32 + 3]
    assert train.labels.tolist() == train_labels
    np.testing.assert_array_equal(test.images.numpy().reshape(len(test_labels), -1), test_data)
    assert test.labels.tolist() == test_labels


def test_cifar10_directory_and_archive_read_back_exactly(tmp_path):
    expected = write_cifar10(tmp_path)
    for path in (tmp_path, tmp_path / "cifar-10-batches-py",
                 tar_gz(tmp_path / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")):
        train, test = read_cifar(path, "cifar10")
        check_exact(train, test, expected)
        assert train.classes == CIFAR10_CLASSES


def test_cifar100_directory_and_archive_read_back_exactly(tmp_path):
    expected = write_cifar100(tmp_path)
    archive = tar_gz(tmp_path / "cifar-100-python", tmp_path / "cifar-100-python.tar.gz")
    for path in (tmp_path / "cifar-100-python", archive):
        train, test = read_cifar(path, "cifar100")
        check_exact(train, test, expected)
        assert train.num_classes == 100 and train.classes[:3] == ["apple", "aquarium_fish", "baby"]


def test_load_data_cifar10_archive(tmp_path):
    expected = write_cifar10(tmp_path)
    archive = tar_gz(tmp_path / "cifar-10-batches-py", tmp_path / "c10.tar.gz")
    splits = load_data(DataConfig(name="cifar10", path=str(archive)))
    check_exact(splits.train, splits.test, expected)
    values = expected[0].reshape(-1, 3, 1024).astype(np.float64) / 255
    np.testing.assert_allclose(splits.mean, values.mean(axis=(0, 2)), atol=1e-12)
    np.testing.assert_allclose(splits.std, values.std(axis=(0, 2)), atol=1e-12)


def test_malicious_batch_is_refused(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Shell:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps({b"data": Shell()}, protocol=2))
    with pytest.raises(UserError, match=r"data_batch_2.*posix\.system|data_batch_2.*os\.system"):
        read_cifar(tmp_path, "cifar10")
    assert not marker.exists()


@pytest.mark.parametrize("batch, message", [
    ({b"data": np.zeros((3, 3072), np.uint8), b"fine_labels": [0, 1, 2]}, "needs keys"),
    ({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, "N x 3072"),
    ({b"data": np.zeros((3, 3072), np.float32), b"labels": [0, 1, 2]}, "uint8"),
    ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1]}, "3 images but 2 labels"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"\[0, 10\)"),
    ([1, 2, 3], "expected a pickled dict"),
])
def test_malformed_batches_name_the_file(tmp_path, batch, message):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UserError, match=message) as info:
        read_cifar(tmp_path, "cifar10")
    assert "test_batch" in str(info.value) and "\n" not in str(info.value)


def test_missing_batch_and_truncated_archive(tmp_path):
    write_cifar10(tmp_path)
    archive = tar_gz(tmp_path / "cifar-10-batches-py", tmp_path / "c10.tar.gz")
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(UserError, match="data_batch_4"):
        read_cifar(tmp_path, "cifar10")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(UserError, match="cut.tar.gz: cannot read the archive, it is truncated"):
        read_cifar(cut, "cifar10")


def test_directory_with_neither_layout_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(UserError, match="neither CIFAR python batches"):
        load_data(DataConfig(name="cifar10", path=str(tmp_path)))
