import pytest
import torch

from pyg_mmrec.graphs import knn_graph
from pyg_mmrec.graphs.ivf import default_num_lists, ivf_knn, spherical_kmeans


def clustered_rows(num_clusters=20, per_cluster=30, dim=32, noise=0.05,
                   seed=0):
    # Well-separated directions with small noise around each.
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_clusters, dim, generator=gen)
    label = torch.arange(num_clusters).repeat_interleave(per_cluster)
    x = centres[label] + noise * torch.randn(label.numel(), dim, generator=gen)
    return x, label


def overlap(approx, exact, k, first):
    a, e = approx[1].view(-1, k)[:, first:], exact[1].view(-1, k)[:, first:]
    return (a[:, :, None] == e[:, None]).any(-1).float().mean().item()


@pytest.mark.parametrize('loop', [True, False])
@pytest.mark.parametrize('n,k', [(300, 7), (40, 39), (5, 2)])
def test_ivf_probing_every_cell_is_the_exact_search(loop, n, k):
    if not loop and k >= n:
        k = n - 1
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, 16, generator=gen)
    x[3] = 0.0  # an all-zero row: cosine 0 to everything, no NaN
    exact = knn_graph(x, k, loop=loop, method='matmul')
    every = knn_graph(x, k, loop=loop, method='ivf', num_probes=n)
    torch.testing.assert_close(every[1], exact[1], atol=1e-6, rtol=0)
    # The zero row ties with everyone: which k it keeps is the search's
    # choice among equals (the exact search takes the lowest indices).
    other = torch.arange(n).repeat_interleave(k) != 3
    assert torch.equal(every[0][:, other], exact[0][:, other])
    zero = every[0][1].view(n, k)[3]
    assert zero.unique().numel() == k and ((zero == 3).sum() == int(loop))


@pytest.mark.parametrize('loop', [True, False])
def test_ivf_finds_the_neighbours_of_clustered_rows(loop):
    # As many cells as clusters: a cluster's rows lie in the few cells of
    # its nearest centroids, and the 16 probes hold every neighbour.
    x, label = clustered_rows()
    exact = knn_graph(x, 10, loop=loop, method='matmul')
    approx = knn_graph(x, 10, loop=loop, method='ivf', num_lists=20)
    assert torch.equal(approx[0], exact[0])
    torch.testing.assert_close(approx[1], exact[1], atol=1e-6, rtol=0)
    assert (label[approx[0][0]] == label[approx[0][1]]).all()


def test_ivf_is_approximate_seeded_and_well_formed():
    gen = torch.Generator().manual_seed(1)
    n, k = 2000, 8
    x = torch.randn(n, 64, generator=gen)
    exact = knn_graph(x, k, method='matmul')
    (row, col), sim = knn_graph(x, k, method='ivf', num_probes=1)
    unit = torch.nn.functional.normalize(x, dim=-1)
    # Values are the pairs' exact cosines, the node itself first, then by
    # decreasing similarity, no node twice:
    torch.testing.assert_close(sim, (unit[row] * unit[col]).sum(-1),
                               atol=1e-5, rtol=0)
    assert torch.equal(row, exact[0][0])
    col = col.view(n, k)
    assert torch.equal(col[:, 0], torch.arange(n))
    assert (sim.view(n, k)[:, 1:-1] >= sim.view(n, k)[:, 2:]).all()
    assert (col.sort(dim=1).values.diff(dim=1) > 0).all()
    # An isotropic cloud has no cells to speak of: one probe of
    # ceil(4 sqrt(2000)) = 179 cells misses neighbours, more probes miss
    # fewer, and the same seed gives the same graph.
    recall = [overlap(knn_graph(x, k, method='ivf', num_probes=p)[0],
                      exact[0], k, 1) for p in (1, 8, 64)]
    assert recall[0] < recall[1] < recall[2] < 1.0
    assert torch.equal(col.view(-1),
                       knn_graph(x, k, method='ivf', num_probes=1)[0][1])


def test_ivf_searches_exactly_when_the_probed_cells_are_too_small():
    # One row per cell and one probe: no query finds anyone in its cells,
    # so each falls back to the exact search.
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(50, 8, generator=gen)
    unit = torch.nn.functional.normalize(x, dim=-1)
    val, col = ivf_knn(unit, 4, loop=False, num_probes=1, num_lists=50)
    exact = knn_graph(x, 4, loop=False, method='matmul')
    assert torch.equal(col.reshape(-1), exact[0][1])
    torch.testing.assert_close(val.reshape(-1), exact[1], atol=1e-6, rtol=0)


def test_spherical_kmeans_is_a_fixed_point_of_lloyd_steps():
    # Converged on clustered rows (all of them the training sample): each
    # centroid is the normalised sum of the rows closest to it.
    x, _ = clustered_rows(num_clusters=5, per_cluster=40)
    unit = torch.nn.functional.normalize(x, dim=-1)
    centroids = spherical_kmeans(unit, 8)
    torch.testing.assert_close(centroids.norm(dim=1), torch.ones(8))
    cell = (unit @ centroids.t()).argmax(dim=1)
    for c in cell.unique().tolist():
        mean = torch.nn.functional.normalize(unit[cell == c].sum(0), dim=0)
        torch.testing.assert_close(centroids[c], mean, atol=1e-5, rtol=0)
    assert torch.equal(centroids, spherical_kmeans(unit, 8))
    assert not torch.equal(centroids, spherical_kmeans(unit, 8, seed=1))
    assert default_num_lists(10_000) == 400 and default_num_lists(3) == 3


def test_ivf_errors():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match="method='ivf' needs cosine=True"):
        knn_graph(x, 3, cosine=False, method='ivf')
    with pytest.raises(ValueError, match="'num_lists' and 'num_probes'"):
        knn_graph(x, 3, method='ivf', num_probes=0)
    with pytest.raises(ValueError, match="'method' must be one of"):
        knn_graph(x, 3, method='hnsw')


@pytest.mark.parametrize('model,searched', [
    ('freedom', {80, 80}), ('fmcns', {80, 80}), ('rearm', {120, 80})])
def test_knn_method_reaches_the_models_searches(model, searched, monkeypatch):
    # knn_method='ivf' sends every feature kNN of the model through the
    # inverted file: FREEDOM/FMCNS's item graphs, REARM's user and item ones.
    from pyg_mmrec.data import make_synthetic
    from pyg_mmrec.graphs import ivf, knn
    from pyg_mmrec.models import MODELS

    rows = []

    def recording(unit, *args, **kwargs):
        rows.append(unit.size(0))
        return ivf.ivf_knn(unit, *args, **kwargs)

    monkeypatch.setattr(knn, 'ivf_knn', recording)
    data = make_synthetic(num_users=120, num_items=80, seed=2)
    MODELS[model](data, knn_method='ivf')
    assert set(rows) == searched and len(rows) >= 2
    rows.clear()
    MODELS[model](data)
    assert rows == []  # the default stays exact
