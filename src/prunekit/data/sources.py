"""`load_data(cfg)`: pick the source named by `DataConfig.name`, find or fetch its files, split and subset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prunekit.config import DataConfig
from prunekit.data.archive import first_tar_file, is_archive
from prunekit.data.cifar import CIFAR_LAYOUTS, cifar_batch_dir, is_cifar_member, read_cifar
from prunekit.data.dataset import DataSplits, ImageDataset, channel_stats
from prunekit.data.digits import load_digits_splits
from prunekit.data.download import download_source
from prunekit.data.idx import FASHION_MNIST_CLASSES, MNIST_CLASSES, has_idx_files, read_idx_dataset
from prunekit.data.imagefolder import is_imagefolder_member, load_imagefolder
from prunekit.data.locate import find_data
from prunekit.data.splits import SPLIT_SEED, stratified_split
from prunekit.data.synthetic import load_synthetic
from prunekit.errors import UserError
from prunekit.registry import Registry

# A source returns (train, test, val or None).
Loaded = tuple[ImageDataset, ImageDataset, ImageDataset | None]
SOURCES: Registry[Callable[[DataConfig], Loaded]] = Registry("data source")


def resolve_path(cfg: DataConfig) -> Path:
    """`data.path` if given, else the first default location holding the data, else a download if allowed."""
    if cfg.path is not None:
        path = Path(cfg.path).expanduser()
        if not path.exists():
            if cfg.download:
                return download_source(cfg.name, path)
            raise UserError(f"data.path {path} does not exist "
                            f"(set data.download: true to fetch {cfg.name} there)")
        return path
    try:
        return find_data(cfg.name)
    except UserError:
        if not cfg.download:
            raise
    return download_source(cfg.name, Path.cwd() / "data")


def _is_cifar_pickle_layout(path: Path, variant: str) -> bool:
    """True for CIFAR python batches (directory or archive), False for a split/class image tree."""
    if path.is_dir():
        if cifar_batch_dir(path, variant) is not None:
            return True
        if not (path / "train").is_dir():
            raise UserError(f"{path}: neither CIFAR python batches ({CIFAR_LAYOUTS[variant].folder}/) nor "
                            "train/<class>/<image> folders")
        return False
    if not is_archive(path):
        raise UserError(f"{path}: expected a directory or a .tar.gz archive of CIFAR batches or images")
    first = first_tar_file(path, lambda name: is_cifar_member(name, variant) or is_imagefolder_member(name))
    if first is None:
        raise UserError(f"{path}: the archive holds neither CIFAR python batches nor split/class image files")
    return is_cifar_member(first, variant)


def _cifar(variant: str) -> Callable[[DataConfig], Loaded]:
    def load(cfg: DataConfig) -> Loaded:
        path = resolve_path(cfg)
        if _is_cifar_pickle_layout(path, variant):
            train, test = read_cifar(path, variant)
            return train, test, None
        return _imagefolder_at(path, cfg)

    return load


def _imagefolder_at(path: Path, cfg: DataConfig) -> Loaded:
    splits = load_imagefolder(path, cfg.cache_dir)
    return splits["train"], splits["test"], splits.get("val")


@SOURCES.register("imagefolder")
def _imagefolder(cfg: DataConfig) -> Loaded:
    if cfg.path is None:
        raise UserError("data.name 'imagefolder' needs data.path: a directory or .tar.gz with "
                        "train/<class>/<image> and test/<class>/<image>")
    return _imagefolder_at(Path(cfg.path).expanduser(), cfg)


def _idx(classes: list[str]) -> Callable[[DataConfig], Loaded]:
    def load(cfg: DataConfig) -> Loaded:
        path = resolve_path(cfg)
        if not has_idx_files(path):
            raise UserError(f"{path}: expected a directory with train-images-idx3-ubyte[.gz], "
                            "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
                            "t10k-labels-idx1-ubyte[.gz]")
        train, test = read_idx_dataset(path, classes)
        return train, test, None

    return load


@SOURCES.register("digits")
def _digits(cfg: DataConfig) -> Loaded:
    train, test = load_digits_splits()
    return train, test, None


@SOURCES.register("synthetic")
def _synthetic(cfg: DataConfig) -> Loaded:
    train, test = load_synthetic(cfg.synthetic_size, tuple(cfg.synthetic_shape), cfg.num_classes or 10)
    return train, test, None


SOURCES.register("cifar10")(_cifar("cifar10"))
SOURCES.register("cifar100")(_cifar("cifar100"))
SOURCES.register("mnist")(_idx(MNIST_CLASSES))
SOURCES.register("fashion-mnist")(_idx(FASHION_MNIST_CLASSES))


def subset(dataset: ImageDataset, count: int | None, seed: int = SPLIT_SEED) -> ImageDataset:
    """A seeded, stratified subset of `count` images (all of them when count is None or >= len)."""
    if count is None or count >= len(dataset):
        return dataset
    _, chosen = stratified_split(dataset.labels, count, seed)
    return dataset.select(chosen)


def load_data(cfg: DataConfig) -> DataSplits:
    """Train/test(/val) datasets of `cfg` with the train split's normalisation statistics.

    Order: load, `train_subset`/`test_subset` (stratified, seeded), then `val_fraction` held out of the
    (subset) train split, stratified and seeded; mean/std come from what remains for training.
    """
    train, test, val = SOURCES.get(cfg.name)(cfg)
    if cfg.num_classes is not None and cfg.num_classes != train.num_classes:
        raise UserError(f"data.num_classes is {cfg.num_classes} but {cfg.name} has "
                        f"{train.num_classes} classes")
    if val is not None and cfg.val_fraction > 0:
        raise UserError(f"{cfg.name} data already has a val split; set data.val_fraction: 0 to use it")
    train = subset(train, cfg.train_subset)
    test = subset(test, cfg.test_subset)
    if cfg.val_fraction > 0:
        rest, held = stratified_split(train.labels, round(cfg.val_fraction * len(train)), SPLIT_SEED + 1)
        if len(held) == 0 or len(rest) == 0:
            raise UserError(f"data.val_fraction {cfg.val_fraction} of {len(train)} training images leaves an "
                            "empty split")
        train, val = train.select(rest), train.select(held)
    if train.classes != test.classes:
        raise UserError(f"{cfg.name}: train and test splits have different classes")
    mean, std = channel_stats(train.images)
    return DataSplits(train=train, test=test, val=val, mean=mean, std=std)
