import numpy as np
import torch

from prunekit.data.splits import stratified_counts, stratified_split


def test_counts_follow_proportions_and_sum_exactly():
    sizes = np.array([50, 30, 20])
    assert stratified_counts(sizes, 10).tolist() == [5, 3, 2]
    # quotas 3.5, 2.1, 1.4 -> floors 3, 2, 1 (sum 6); the one left goes to the largest remainder (class 0)
    assert stratified_counts(sizes, 7).tolist() == [4, 2, 1]
    assert stratified_counts(sizes, 0).tolist() == [0, 0, 0]
    assert stratified_counts(sizes, 500).tolist() == [50, 30, 20]


def test_split_is_disjoint_complete_stratified_and_seeded():
    shuffle = torch.randperm(80, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0] * 40 + [1] * 25 + [2] * 15)[shuffle]
    rest, taken = stratified_split(labels, 16, seed=5)
    assert len(taken) == 16 and len(rest) == 64
    assert set(rest.tolist()).isdisjoint(taken.tolist())
    assert sorted(rest.tolist() + taken.tolist()) == list(range(80))
    assert torch.bincount(labels[taken], minlength=3).tolist() == [8, 5, 3]
    assert torch.equal(taken, stratified_split(labels, 16, seed=5)[1])
    assert not torch.equal(taken, stratified_split(labels, 16, seed=6)[1])
    assert torch.all(rest[1:] > rest[:-1]) and torch.all(taken[1:] > taken[:-1])
