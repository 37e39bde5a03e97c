import tarfile

import numpy as np
import pytest
from PIL import Image

from prunekit.config import DataConfig
from prunekit.data import imagefolder, load_data
from prunekit.data.imagefolder import default_cache_dir, load_imagefolder, parse_entry
from prunekit.errors import UserError

CLASSES = ["zebra", "ant", "moth"]  # written unsorted on purpose: class order must be sorted names


def write_tree(root, counts=None, size=(5, 4), mode="RGB", seed=0):
    """root/split/class/NN.png; returns {split: [(class, array), ...]} in write order."""
    rng = np.random.default_rng(seed)
    counts = counts or {"train": 3, "test": 2}
    written = {}
    for split, per_class in counts.items():
        written[split] = []
        for cls in CLASSES:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
                array = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(array, mode=mode).save(root / split / cls / f"{i:02d}.png")
                written[split].append((cls, array))
    return written


def expected_split(written, split):
    """Images in loader order: sorted class name, then file name; as C x H x W."""
    order = sorted(CLASSES)
    items = sorted(((order.index(cls), i, a) for i, (cls, a) in enumerate(written[split])), key=lambda t: t[:2])
    images = np.stack([a.transpose(2, 0, 1) if a.ndim == 3 else a[None] for _, _, a in items])
    return images, [label for label, _, _ in items]


def make_tarball(root, archive, top="mydata"):
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "test", "val"):
            if (root / split).exists():
                tar.add(root / split, arcname=f"{top}/{split}")
    return archive


def test_tarball_round_trips_pixel_exactly_and_second_load_uses_cache(tmp_path, monkeypatch):
    written = write_tree(tmp_path / "tree")
    archive = make_tarball(tmp_path / "tree", tmp_path / "images.tar.gz")
    cache = tmp_path / "cache"
    splits = load_imagefolder(archive, str(cache))
    for split in ("train", "test"):
        images, labels = expected_split(written, split)
        np.testing.assert_array_equal(splits[split].images.numpy(), images)
        assert splits[split].labels.tolist() == labels
        assert splits[split].classes == ["ant", "moth", "zebra"]
    assert "val" not in splits
    assert len(list(cache.glob("imagefolder-*.safetensors"))) == 1

    def no_decoding(path):
        raise AssertionError("the second load must come from the cache")

    monkeypatch.setattr(imagefolder, "decode_tree", no_decoding)
    again = load_imagefolder(archive, str(cache))
    assert np.array_equal(again["train"].images.numpy(), splits["train"].images.numpy())
    assert again["test"].labels.tolist() == splits["test"].labels.tolist()
    assert again["train"].classes == ["ant", "moth", "zebra"]


def test_changed_directory_is_decoded_again(tmp_path):
    write_tree(tmp_path / "tree")
    cache = tmp_path / "cache"
    first = load_imagefolder(tmp_path / "tree", str(cache))
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "tree" / "train" / "ant" / "99.png")
    second = load_imagefolder(tmp_path / "tree", str(cache))
    assert len(second["train"]) == len(first["train"]) + 1
    assert len(list(cache.glob("*.safetensors"))) == 2


def test_val_split_grey_images_and_cifar10_name_detects_image_folders(tmp_path):
    written = write_tree(tmp_path / "tree", counts={"train": 2, "val": 1, "test": 1}, mode="L")
    archive = make_tarball(tmp_path / "tree", tmp_path / "grey.tar.gz")
    splits = load_data(DataConfig(name="cifar10", path=str(archive), cache_dir=str(tmp_path / "c")))
    assert splits.train.shape == (1, 4, 5) and splits.val is not None
    images, labels = expected_split(written, "val")
    np.testing.assert_array_equal(splits.val.images.numpy(), images)
    with pytest.raises(UserError, match="already has a val split"):
        load_data(DataConfig(name="imagefolder", path=str(archive), val_fraction=0.2, cache_dir=str(tmp_path / "c")))


def test_mixed_grey_and_colour_becomes_colour(tmp_path):
    write_tree(tmp_path / "tree", counts={"train": 1, "test": 1})
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    Image.fromarray(grey, mode="L").save(tmp_path / "tree" / "train" / "ant" / "50.png")
    splits = load_imagefolder(tmp_path / "tree", str(tmp_path / "c"))
    ant = splits["train"].images[splits["train"].labels == 0]
    np.testing.assert_array_equal(ant[-1].numpy(), np.stack([grey] * 3))


@pytest.mark.parametrize("damage, message", [
    ("empty", "no images found"),
    ("no_test", "missing split 'test'"),
    ("empty_class", "class folder has no images"),
    ("bad_image", "cannot decode image"),
    ("size", "same size"),
    ("test_only_class", "has no train images"),
])
def test_malformed_trees_are_user_errors(tmp_path, damage, message):
    root = tmp_path / "tree"
    if damage == "empty":
        root.mkdir()
    else:
        write_tree(root, counts={"train": 1} if damage == "no_test" else None)
    if damage == "empty_class":
        (root / "train" / "wasp").mkdir()
    if damage == "bad_image":
        (root / "test" / "ant" / "00.png").write_bytes(b"not a png")
    if damage == "size":
        Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(root / "test" / "ant" / "07.png")
    if damage == "test_only_class":
        (root / "test" / "wasp").mkdir()
        Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(root / "test" / "wasp" / "0.png")
    with pytest.raises(UserError, match=message) as info:
        load_imagefolder(root, str(tmp_path / "c"))
    assert "\n" not in str(info.value)


def test_imagefolder_without_path_and_parse_entry():
    with pytest.raises(UserError, match="needs data.path"):
        load_data(DataConfig(name="imagefolder"))
    assert parse_entry("x/train/cat/1.JPG").cls == "cat"
    assert parse_entry("train/cat/.hidden.png") is None
    assert parse_entry("other/cat/1.png") is None
    assert parse_entry("train/cat/readme.txt") is None


def test_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "env"))
    assert default_cache_dir(None) == tmp_path / "env"
    assert default_cache_dir(str(tmp_path / "cfg")) == tmp_path / "cfg"
    monkeypatch.delenv("PRUNEKIT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir(None) == tmp_path / ".cache" / "prunekit"


def test_corrupt_cache_is_rebuilt(tmp_path):
    written = write_tree(tmp_path / "tree", counts={"train": 1, "test": 1})
    cache = tmp_path / "c"
    load_imagefolder(tmp_path / "tree", str(cache))
    (cache_file,) = cache.glob("*.safetensors")
    cache_file.write_bytes(cache_file.read_bytes()[:50])
    splits = load_imagefolder(tmp_path / "tree", str(cache))
    np.testing.assert_array_equal(splits["test"].images.numpy(), expected_split(written, "test")[0])
