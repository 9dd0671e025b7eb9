import pytest
import torch

from pyg_mmrec.graphs import (
    GENREC_CLUSTERS,
    elbow_num_clusters,
    kmeans_clusters,
    modality_clusters,
)


def blobs(k=4, n=40, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 10 * torch.randn(k, d, generator=g)
    x = centres.repeat_interleave(n, 0) + torch.randn(k * n, d, generator=g)
    return x, torch.arange(k).repeat_interleave(n)


def same_partition(a, b):
    return torch.equal(a[:, None] == a[None], b[:, None] == b[None])


def test_kmeans_labels_are_deterministic_for_a_seed_and_find_blobs():
    x, truth = blobs()
    a = kmeans_clusters(x, 4, seed=3)
    assert torch.equal(a, kmeans_clusters(x, 4, seed=3))
    assert a.dtype == torch.long and a.shape == (160, )
    assert same_partition(a, truth)
    # the scaler: one huge column does not decide the clusters
    scaled = x.clone()
    scaled[:, 0] *= 1000
    assert same_partition(kmeans_clusters(scaled, 4, seed=3), truth)
    with pytest.raises(ValueError, match='clusters'):
        kmeans_clusters(x, 0)


def test_elbow_finds_the_number_of_blobs():
    x, _ = blobs(k=4)
    assert elbow_num_clusters(x, [2, 3, 4, 5, 6, 7], seed=0) == 4
    with pytest.raises(ValueError, match='candidates'):
        elbow_num_clusters(x, [2, 3])


def test_each_modality_gets_its_own_clusters():
    x, truth = blobs(k=3)
    other = torch.randn(120, 5, generator=torch.Generator().manual_seed(1))
    out = modality_clusters({'image': x, 'audio': other},
                            {'image': 3, 'audio': 7})
    assert int(out['image'].max()) == 2 and int(out['audio'].max()) == 6
    assert same_partition(out['image'], truth)
    with pytest.raises(ValueError, match="'audio'"):
        modality_clusters({'audio': other}, {'image': 3})
    assert GENREC_CLUSTERS['tiktok'] == {'image': 18, 'text': 59,
                                         'audio': 46}
