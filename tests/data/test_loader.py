import numpy as np
import pytest
import torch

from prunekit.data.dataset import ImageDataset
from prunekit.data.loader import BatchLoader, crop_and_flip


def indexed_dataset(n=23, c=3, h=6, w=5, seed=0):
    """Random images whose label is their own index, so a batch tells which samples it holds."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n), [str(i) for i in range(n)])


def reference_crop_flip(images, offsets, flips, padding):
    """Slow per-sample reference: zero-pad with NumPy, slice the crop, mirror if asked."""
    out = []
    h, w = images.shape[2:]
    for image, (top, left), flip in zip(images.numpy(), offsets.tolist(), flips.tolist(), strict=True):
        padded = np.pad(image, ((0, 0), (padding, padding), (padding, padding)))
        crop = padded[:, top:top + h, left:left + w]
        out.append(crop[:, :, ::-1] if flip else crop)
    return torch.from_numpy(np.stack(out))


def loader(ds, **kwargs):
    args = dict(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), shuffle=True, augment=True, seed=7, crop_padding=2)
    args.update(kwargs)
    return BatchLoader(ds, args.pop("batch_size", 4), **args)


@pytest.mark.parametrize("padding", [0, 1, 3])
def test_crop_and_flip_match_the_per_sample_reference(padding):
    ds = indexed_dataset(n=9)
    g = torch.Generator().manual_seed(padding)
    offsets = torch.randint(0, 2 * padding + 1, (9, 2), generator=g)
    flips = torch.rand(9, generator=g) < 0.5
    flips[0], flips[1] = True, False
    got = crop_and_flip(ds.images, offsets, flips, padding)
    assert got.dtype == torch.uint8
    assert torch.equal(got, reference_crop_flip(ds.images, offsets, flips, padding))


def test_crop_hand_example():
    image = torch.arange(1, 10, dtype=torch.uint8).view(1, 1, 3, 3)  # [[1,2,3],[4,5,6],[7,8,9]]
    shifted = crop_and_flip(image, torch.tensor([[0, 2]]), torch.tensor([False]), padding=1)
    assert shifted[0, 0].tolist() == [[0, 0, 0], [2, 3, 0], [5, 6, 0]]
    mirrored = crop_and_flip(image, torch.tensor([[1, 1]]), torch.tensor([True]), padding=1)
    assert mirrored[0, 0].tolist() == [[3, 2, 1], [6, 5, 4], [9, 8, 7]]


def test_shapes_dtypes_and_length():
    ds = indexed_dataset()
    batches = list(loader(ds).iterate(0))
    assert len(loader(ds)) == 6 == len(batches)
    assert [b[0].shape[0] for b in batches] == [4, 4, 4, 4, 4, 3]
    images, labels = batches[0]
    assert images.dtype == torch.float32 and images.shape[1:] == (3, 6, 5) and labels.dtype == torch.int64
    assert len(loader(ds, drop_last=True)) == 5 and len(list(loader(ds, drop_last=True).iterate(0))) == 5
    cl = next(loader(ds, channels_last=True).iterate(0))[0]
    assert cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(cl, images)


def test_every_sample_exactly_once_per_epoch():
    ds = indexed_dataset()
    for epoch in (0, 1):
        seen = torch.cat([labels for _, labels in loader(ds).iterate(epoch)])
        assert sorted(seen.tolist()) == list(range(23))
    seen = torch.cat([labels for _, labels in loader(ds, shuffle=False).iterate(0)])
    assert seen.tolist() == list(range(23))


def test_deterministic_per_seed_and_epoch():
    ds = indexed_dataset()
    first = list(loader(ds).iterate(3))
    again = list(loader(ds).iterate(3))
    for (a, la), (b, lb) in zip(first, again, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    other_epoch = torch.cat([lab for _, lab in loader(ds).iterate(4)])
    other_seed = torch.cat([lab for _, lab in loader(ds, seed=8).iterate(3)])
    order = torch.cat([lab for _, lab in first])
    assert not torch.equal(order, other_epoch) and not torch.equal(order, other_seed)


def test_start_step_yields_the_tail_of_the_epoch():
    ds = indexed_dataset()
    full = list(loader(ds).iterate(2))
    for start in (0, 1, 4, 6):
        tail = list(loader(ds).iterate(2, start_step=start))
        assert len(tail) == len(full) - start
        for (a, la), (b, lb) in zip(full[start:], tail, strict=True):
            assert torch.equal(a, b) and torch.equal(la, lb)
    with pytest.raises(ValueError):
        list(loader(ds).iterate(2, start_step=7))


def test_loader_output_equals_reference_augmentation_and_hand_normalisation():
    ds = indexed_dataset()
    bl = loader(ds)
    order = bl.epoch_order(5)
    offsets, flips = bl.epoch_augmentation(5)
    assert flips.any() and not flips.all() and offsets.min() >= 0 and offsets.max() <= 4
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    for step, (images, labels) in enumerate(bl.iterate(5)):
        rows = slice(4 * step, 4 * step + 4)
        assert torch.equal(labels, order[rows])
        crops = reference_crop_flip(ds.images[order[rows]], offsets[rows], flips[rows], 2)
        expected = (crops.double() / 255.0 - mean.double()) / std.double()
        torch.testing.assert_close(images.double(), expected, rtol=0, atol=1e-5)


def test_normalisation_hand_example_and_no_augmentation():
    images = torch.tensor([0, 51, 255, 102], dtype=torch.uint8).view(4, 1, 1, 1)
    ds = ImageDataset(images, torch.zeros(4, dtype=torch.int64), ["only"])
    batch, _ = next(iter(BatchLoader(ds, 4, mean=(0.2,), std=(0.5,), shuffle=False, augment=False).iterate(0)))
    # (v / 255 - 0.2) / 0.5 for v = 0, 51, 255, 102
    torch.testing.assert_close(batch.view(-1), torch.tensor([-0.4, 0.0, 1.6, 0.4]), rtol=0, atol=1e-6)
    raw, _ = next(iter(BatchLoader(ds, 4, mean=(0.2,), std=(0.5,), shuffle=False, augment=False,
                                   normalize=False).iterate(0)))
    torch.testing.assert_close(raw.view(-1), torch.tensor([0.0, 0.2, 1.0, 0.4]), rtol=0, atol=1e-6)


def test_flip_off_and_unaugmented_batches_are_the_stored_images():
    ds = indexed_dataset()
    bl = loader(ds, flip=False)
    assert not bl.epoch_augmentation(0)[1].any()
    plain = loader(ds, augment=False, normalize=False)
    for images, labels in plain.iterate(1):
        torch.testing.assert_close(images * 255.0, ds.images[labels].float(), rtol=0, atol=1e-4)


def test_mean_std_length_must_match_channels():
    with pytest.raises(ValueError, match="3 values"):
        BatchLoader(indexed_dataset(), 4, mean=(0.5,), std=(0.2,), shuffle=True, augment=True)


def test_global_batch_samples_counts_the_whole_batch_whatever_the_shard():
    from prunekit.data import BatchLoader
    from prunekit.data.dataset import ImageDataset

    images = torch.zeros(10, 1, 2, 2, dtype=torch.uint8)
    loader = BatchLoader(ImageDataset(images, torch.zeros(10, dtype=torch.long), ["a", "b"]), 4, mean=[0.0], std=[1.0],
                         shuffle=False, augment=False)
    loader.rank, loader.world = 1, 2
    assert [loader.global_batch_samples(s) for s in range(len(loader))] == [4, 4, 2]
    assert [len(y) for _, y in loader.iterate(0)] == [2, 2, 1]


@pytest.mark.parametrize("kwargs", [{}, {"augment": False}, {"shuffle": False, "channels_last": True},
                                    {"drop_last": True, "flip": False, "crop_padding": 0}])
def test_resident_loader_gives_the_host_loaders_batches_bitwise(kwargs):
    ds = indexed_dataset()
    for epoch, start in ((0, 0), (2, 3)):
        host = list(loader(ds, **kwargs).iterate(epoch, start_step=start))
        resident = list(loader(ds, resident=True, **kwargs).iterate(epoch, start_step=start))
        assert len(host) == len(resident) > 0
        for (a, la), (b, lb) in zip(host, resident, strict=True):
            assert torch.equal(a, b) and torch.equal(la, lb)
            assert a.stride() == b.stride()


def test_resident_loader_shards_like_the_host_loader():
    ds = indexed_dataset()
    for rank in (0, 1):
        host, resident = loader(ds), loader(ds, resident=True)
        for one in (host, resident):
            one.rank, one.world = rank, 2
        for (a, la), (b, lb) in zip(host.iterate(1), resident.iterate(1), strict=True):
            assert torch.equal(a, b) and torch.equal(la, lb)


def test_on_device_shares_a_copy_already_there():
    from prunekit.data.loader import on_device

    ds = indexed_dataset()
    assert on_device(ds, "cpu") is ds
    assert loader(ds, resident=True).dataset is ds
