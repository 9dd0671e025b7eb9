import pytest
import torch

from pyg_mmrec.graphs import knn_adjacency, knn_graph
from pyg_mmrec.testing import with_package

needs_cluster = with_package('torch_cluster')


def dense_knn(x, k, loop, cosine=True):
    # Brute-force reference on the full n x n matrix (small n only).
    if cosine:
        xn = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        sim = xn @ xn.t()
    else:
        sim = -(x[:, None] - x[None, :]).norm(dim=-1)
    key = sim.clone()
    key.fill_diagonal_(float('inf') if loop else float('-inf'))
    idx = key.topk(k, dim=1)[1]
    return idx, sim.gather(1, idx)


def square_example():
    # Four 2-d points: 0 and 1 close, 2 and 3 close, the pairs far apart.
    return torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.2, 1.0]])


def test_knn_graph_hand_example():
    x = square_example()
    edge_index, sim = knn_graph(x, 2, method='matmul')
    assert edge_index.tolist() == [[0, 0, 1, 1, 2, 2, 3, 3],
                                   [0, 1, 1, 0, 2, 3, 3, 2]]
    c01 = 1 / (1.01 ** 0.5)
    c23 = 1 / (1.04 ** 0.5)
    expected = torch.tensor([1, c01, 1, c01, 1, c23, 1, c23])
    assert torch.allclose(sim, expected, atol=1e-6)

    edge_index, sim = knn_graph(x, 1, loop=False, method='matmul')
    assert edge_index.tolist() == [[0, 1, 2, 3], [1, 0, 3, 2]]


def test_knn_adjacency_hand_values():
    x = square_example()
    k = 2
    c01 = 1 / (1.01 ** 0.5)
    c23 = 1 / (1.04 ** 0.5)

    # FREEDOM / FMCNS: binary, sym with the binary degree -> 1 / k.
    adj = knn_adjacency(x, k, weighting='binary', method='matmul')
    assert adj.layout == torch.sparse_csr
    dense = adj.to_dense()
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1],
                             [0, 0, 1, 1]]) / k
    assert torch.allclose(dense, expected)

    # REARM: similarity, sym with the binary degree -> sim / k.
    adj = knn_adjacency(x, k, weighting='similarity', degree='binary',
                        method='matmul')
    sim = torch.tensor([[1, c01, 0, 0], [c01, 1, 0, 0], [0, 0, 1, c23],
                        [0, 0, c23, 1]])
    assert torch.allclose(adj.to_dense(), sim / k, atol=1e-6)

    # GenRec: similarity, sym with the weighted degree.
    adj = knn_adjacency(x, k, weighting='similarity', degree='weighted',
                        method='matmul')
    deg = sim.sum(dim=1)
    expected = sim / deg.sqrt().view(-1, 1) / deg.sqrt().view(1, -1)
    assert torch.allclose(adj.to_dense(), expected, atol=1e-6)

    # Row normalisation: rows sum to one.
    adj = knn_adjacency(x, k, weighting='similarity', normalization='row',
                        method='matmul')
    assert torch.allclose(adj.to_dense().sum(dim=1), torch.ones(4))

    adj = knn_adjacency(x, k, normalization='none', method='matmul')
    assert torch.equal(adj.to_dense(), expected.ne(0).float())


@pytest.mark.parametrize('n,d', [(30, 8), (257, 16)])
@pytest.mark.parametrize('k', [1, 5, 10])
@pytest.mark.parametrize('loop', [True, False])
@pytest.mark.parametrize('cosine', [True, False])
def test_knn_matmul_matches_dense(n, d, k, loop, cosine):
    torch.manual_seed(n + k)
    x = torch.randn(n, d)
    edge_index, sim = knn_graph(x, k, loop=loop, cosine=cosine,
                                method='matmul', chunk_size=n // 3 + 1)
    assert edge_index.size() == (2, n * k)
    assert torch.equal(edge_index[0],
                       torch.arange(n).repeat_interleave(k))
    idx, ref = dense_knn(x, k, loop, cosine)
    assert torch.equal(edge_index[1].view(n, k), idx)
    assert torch.allclose(sim.view(n, k), ref, atol=1e-4)
    has_self = (edge_index[0] == edge_index[1]).view(n, k).sum(1)
    assert bool((has_self == int(loop)).all())


@needs_cluster
@pytest.mark.parametrize('n,d', [(30, 8), (257, 16)])
@pytest.mark.parametrize('k', [1, 5, 10])
@pytest.mark.parametrize('loop', [True, False])
@pytest.mark.parametrize('cosine', [True, False])
def test_knn_cluster_matches_matmul(n, d, k, loop, cosine):
    torch.manual_seed(n * k)
    x = torch.randn(n, d)
    a_index, a_sim = knn_graph(x, k, loop=loop, cosine=cosine,
                               method='matmul')
    b_index, b_sim = knn_graph(x, k, loop=loop, cosine=cosine,
                               method='cluster')
    assert torch.equal(a_index, b_index)
    assert torch.allclose(a_sim, b_sim, atol=1e-5)


def test_knn_auto_is_matmul_on_cpu():
    x = torch.randn(40, 5)
    a = knn_graph(x, 3, method='auto')
    b = knn_graph(x, 3, method='matmul')
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize('method', [
    'matmul', pytest.param('cluster', marks=needs_cluster)
])
@pytest.mark.parametrize('loop', [True, False])
def test_knn_zero_rows_give_no_nan(method, loop):
    torch.manual_seed(0)
    x = torch.randn(20, 6).abs()
    x[3] = 0
    x[11] = 0
    edge_index, sim = knn_graph(x, 4, loop=loop, method=method)
    assert torch.isfinite(sim).all()
    # Zero rows have similarity zero to every other node:
    for row in (3, 11):
        mask = edge_index[0] == row
        others = mask & (edge_index[1] != row)
        assert torch.all(sim[others] == 0)
    # No positive-feature row prefers a zero row (cosine 0 < positive):
    mask = (edge_index[0] != 3) & (edge_index[0] != 11)
    zero_rows = torch.tensor([3, 11])
    assert not bool(torch.isin(edge_index[1][mask], zero_rows).any())
    adj = knn_adjacency(x, 4, weighting='similarity', loop=loop, method=method)
    assert torch.isfinite(adj.values()).all()


def test_knn_ties_are_deterministic():
    # Duplicated rows: ties broken towards the lower index.
    x = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 3)
    edge_index, sim = knn_graph(x, 3, loop=True, method='matmul')
    assert edge_index[1].view(8, 3).tolist() == [
        [0, 1, 2], [1, 0, 2], [2, 0, 1], [3, 0, 1], [4, 0, 1],
        [5, 6, 7], [6, 5, 7], [7, 5, 6]
    ]
    edge_index, _ = knn_graph(x, 2, loop=False, method='matmul')
    assert edge_index[1].view(8, 2).tolist() == [
        [1, 2], [0, 2], [0, 1], [0, 1], [0, 1], [6, 7], [5, 7], [5, 6]
    ]
    # All-zero input: every similarity is zero and nothing is NaN.
    edge_index, sim = knn_graph(torch.zeros(5, 3), 2, method='matmul')
    assert edge_index[1].view(5, 2).tolist() == [[0, 1], [1, 0], [2, 0],
                                                 [3, 0], [4, 0]]
    assert torch.equal(sim, torch.zeros(10))


@needs_cluster
def test_knn_cluster_duplicates_keep_k_per_node():
    x = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 3)
    for loop in (True, False):
        edge_index, _ = knn_graph(x, 2, loop=loop, method='cluster')
        assert edge_index.size(1) == 16
        has_self = (edge_index[0] == edge_index[1]).view(8, 2).sum(1)
        assert bool((has_self == int(loop)).all())


def test_knn_errors():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match='neighbours'):
        knn_graph(x, 5, loop=False)
    with pytest.raises(ValueError, match='method'):
        knn_graph(x, 2, method='faiss')
    with pytest.raises(ValueError, match='weighting'):
        knn_adjacency(x, 2, weighting='gaussian')
    with pytest.raises(ValueError, match='degree'):
        knn_adjacency(x, 2, degree='count')
    assert knn_graph(x, 5, loop=True)[0].size(1) == 25


@pytest.mark.parametrize('loop', [True, False])
def test_knn_projection_is_exact_on_low_rank_rows(loop):
    # Rows spanning 6 dimensions of a 64-d space: a 6-d principal projection
    # keeps every inner product, so the neighbours are the exact ones.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(120, 6, generator=gen) @ torch.randn(6, 64, generator=gen)
    exact = knn_graph(x, 5, loop=loop)
    approx = knn_graph(x, 5, loop=loop, max_dim=6)
    assert torch.equal(approx[0], exact[0])
    assert torch.allclose(approx[1], exact[1], atol=1e-6)
    same = knn_graph(x, 5, loop=loop, max_dim=64)  # d <= max_dim: exact path
    assert torch.equal(same[0], exact[0]) and torch.equal(same[1], exact[1])


def test_knn_projection_keeps_exact_values_and_order():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 256, generator=gen)
    (row, col), sim = knn_graph(x, 8, max_dim=16)
    unit = torch.nn.functional.normalize(x, dim=-1)
    assert torch.allclose(sim, (unit[row] * unit[col]).sum(-1), atol=1e-6)
    sim = sim.view(200, 8)
    assert torch.equal(col.view(200, 8)[:, 0], torch.arange(200))  # itself
    assert (sim[:, 1:-1] >= sim[:, 2:]).all()  # decreasing after itself
    # approximate: a random 256-d cloud loses most of its neighbours in 16-d
    # (this checks the projection is really used), and the result is seeded
    exact = knn_graph(x, 8)[0][1].view(200, 8)
    overlap = (col.view(200, 8)[:, :, None] == exact[:, None]).any(-1)
    assert overlap[:, 1:].float().mean() < 0.9
    assert torch.equal(col, knn_graph(x, 8, max_dim=16)[0][1])


@pytest.mark.parametrize('loop', [True, False])
def test_knn_projection_reranks_more_candidates_exactly(loop):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(200, 256, generator=gen)
    exact = knn_graph(x, 8, loop=loop)
    first = 1 if loop else 0

    def overlap(rerank):
        col = knn_graph(x, 8, loop=loop, max_dim=16,
                        rerank=rerank)[0][1].view(200, 8)
        want = exact[0][1].view(200, 8)
        return (col[:, first:, None] == want[:, None, first:]).any(-1).float(
            ).mean().item()

    assert overlap(1) < overlap(4) < 1.0
    # Candidates covering every node: the exact neighbours, values and order.
    every = knn_graph(x, 8, loop=loop, max_dim=16, rerank=25)
    assert torch.equal(every[0], exact[0])
    torch.testing.assert_close(every[1], exact[1], atol=1e-6, rtol=0)


def test_knn_projection_errors():
    x = torch.randn(10, 8)
    with pytest.raises(ValueError, match="'max_dim' needs cosine=True"):
        knn_graph(x, 3, cosine=False, max_dim=4)
    with pytest.raises(ValueError, match="'max_dim' must be positive"):
        knn_graph(x, 3, max_dim=0)
    with pytest.raises(ValueError, match="'rerank' must be positive"):
        knn_graph(x, 3, max_dim=4, rerank=0)
