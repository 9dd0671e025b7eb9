import pytest
import torch
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from pyg_mmrec.graphs import (
    bipartite_adjacency,
    normalize_edge_weight,
    to_sparse_csr,
    user_item_matrix,
    weighted_sum,
)

S2, S3, S6 = 2 ** -0.5, 3 ** -0.5, 6 ** -0.5


def small_graph():
    # 2 users, 3 items: u0-{i0, i1}, u1-{i1}; item 2 has no interaction.
    # A duplicate (u0, i1) pair must collapse.
    return torch.tensor([[0, 0, 1, 0], [0, 1, 1, 1]])


def random_pairs(num_users, num_items, num_edges, seed):
    gen = torch.Generator().manual_seed(seed)
    user = torch.randint(num_users, (num_edges, ), generator=gen)
    item = torch.randint(num_items, (num_edges, ), generator=gen)
    return torch.stack([user, item])


def dense_bipartite(edge_index, num_users, num_items):
    n = num_users + num_items
    dense = torch.zeros(n, n)
    dense[edge_index[0], edge_index[1] + num_users] = 1
    dense[edge_index[1] + num_users, edge_index[0]] = 1
    return dense


def test_sym_hand_example():
    adj = bipartite_adjacency(small_graph(), 2, 3)
    assert adj.layout == torch.sparse_csr and adj.shape == (5, 5)
    # degrees: u0 = 2, u1 = 1, i0 = 1, i1 = 2, i2 = 0
    expected = torch.tensor([
        [0, 0, S2, 0.5, 0],
        [0, 0, 0, S2, 0],
        [S2, 0, 0, 0, 0],
        [0.5, S2, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ])
    assert torch.allclose(adj.to_dense(), expected)
    assert adj.values().numel() == 6


def test_sym_self_loops_hand_example():
    adj = bipartite_adjacency(small_graph(), 2, 3, self_loops=True)
    # degrees + 1: u0 = 3, u1 = 2, i0 = 2, i1 = 3, i2 = 1
    expected = torch.tensor([
        [1 / 3, 0, S6, 1 / 3, 0],
        [0, 1 / 2, 0, S6, 0],
        [S6, 0, 1 / 2, 0, 0],
        [1 / 3, S6, 0, 1 / 3, 0],
        [0, 0, 0, 0, 1],
    ])
    assert torch.allclose(adj.to_dense(), expected)


def test_asym_hand_example():
    a, b = -0.5, -0.3
    adj = bipartite_adjacency(small_graph(), 2, 3, normalization='asym',
                              self_loops=True, exponents=(a, b))
    deg = torch.tensor([3.0, 2.0, 2.0, 3.0, 1.0])
    mask = torch.tensor([
        [1, 0, 1, 1, 0],
        [0, 1, 0, 1, 0],
        [1, 0, 1, 0, 0],
        [1, 1, 0, 1, 0],
        [0, 0, 0, 0, 1],
    ]).float()
    expected = deg.pow(a).view(-1, 1) * mask * deg.pow(b).view(1, -1)
    assert torch.allclose(adj.to_dense(), expected)
    # 'row' = exponents (-1, 0): rows sum to one.
    adj = bipartite_adjacency(small_graph(), 2, 3, normalization='row')
    assert torch.allclose(adj.to_dense().sum(1),
                          torch.tensor([1.0, 1, 1, 1, 0]))


def test_zero_degree_nodes_give_zero_rows():
    adj = bipartite_adjacency(small_graph(), 3, 4)  # u2 and i2, i3 isolated
    dense = adj.to_dense()
    assert torch.isfinite(dense).all()
    assert dense[2].abs().sum() == 0 and dense[-1].abs().sum() == 0
    adj = bipartite_adjacency(small_graph(), 3, 4, eps=1e-7)
    assert torch.isfinite(adj.to_dense()).all()
    assert torch.allclose(adj.to_dense(), dense, atol=1e-6)


@pytest.mark.parametrize('num_users,num_items,num_edges', [(7, 5, 20),
                                                           (40, 60, 300)])
@pytest.mark.parametrize('self_loops', [False, True])
def test_sym_matches_gcn_norm(num_users, num_items, num_edges, self_loops):
    pairs = random_pairs(num_users, num_items, num_edges, seed=num_edges)
    adj = bipartite_adjacency(pairs, num_users, num_items,
                              self_loops=self_loops)
    dense = dense_bipartite(pairs, num_users, num_items)
    n = num_users + num_items
    edge_index = dense.nonzero().t()
    edge_index, weight = gcn_norm(edge_index, None, n,
                                  add_self_loops=self_loops)
    ref = torch.zeros(n, n)
    ref[edge_index[1], edge_index[0]] = weight  # out_i = sum_j w_ji x_j
    assert torch.allclose(adj.to_dense(), ref, atol=1e-6)
    # 'asym' with (-0.5, -0.5) equals 'sym':
    asym = bipartite_adjacency(pairs, num_users, num_items, 'asym',
                               self_loops=self_loops)
    assert torch.allclose(asym.to_dense(), adj.to_dense())


def test_none_and_user_item_matrix():
    pairs = small_graph()
    adj = bipartite_adjacency(pairs, 2, 3, normalization='none')
    assert torch.equal(adj.to_dense(), dense_bipartite(pairs, 2, 3))
    full = bipartite_adjacency(pairs, 2, 3, self_loops=True).to_dense()
    block = user_item_matrix(pairs, 2, 3, normalization='sym',
                             self_loops=True)
    assert block.shape == (2, 3)
    assert torch.allclose(block.to_dense(), full[:2, 2:])
    binary = user_item_matrix(pairs, 2, 3)
    assert torch.equal(binary.to_dense(),
                       torch.tensor([[1.0, 1, 0], [0, 1, 0]]))
    row = user_item_matrix(pairs, 2, 3, normalization='row')
    assert torch.allclose(row.to_dense(),
                          torch.tensor([[0.5, 0.5, 0], [0, 1, 0]]))


def test_bipartite_errors():
    with pytest.raises(ValueError, match='normalization'):
        bipartite_adjacency(small_graph(), 2, 3, normalization='left')
    with pytest.raises(ValueError, match='Item id'):
        bipartite_adjacency(small_graph(), 2, 1)
    with pytest.raises(ValueError, match='User id'):
        bipartite_adjacency(small_graph(), 1, 3)
    with pytest.raises(ValueError, match='shape'):
        bipartite_adjacency(torch.zeros(3, 2, dtype=torch.long), 2, 3)


def test_sparse_helpers():
    edge_index = torch.tensor([[0, 0, 1, 2, 0], [1, 2, 0, 2, 1]])
    weight = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    adj = to_sparse_csr(edge_index, weight, 3)
    expected = torch.tensor([[0, 6.0, 2], [3, 0, 0], [0, 0, 4]])
    assert torch.equal(adj.to_dense(), expected)  # duplicates summed
    rect = to_sparse_csr(edge_index, weight, (3, 4))
    assert rect.shape == (3, 4)

    deg = torch.tensor([8.0, 3.0, 4.0])
    for norm, ref in [
        ('sym', expected / deg.sqrt().view(-1, 1) / deg.sqrt().view(1, -1)),
        ('row', expected / deg.view(-1, 1)),
        ('none', expected),
    ]:
        w = normalize_edge_weight(edge_index, weight, 3, norm)
        assert torch.allclose(to_sparse_csr(edge_index, w, 3).to_dense(),
                              ref)
    with pytest.raises(ValueError, match='normalization'):
        normalize_edge_weight(edge_index, weight, 3, 'left')

    total = weighted_sum([adj, adj.t().to_sparse_csr()], [0.1, 0.9])
    assert torch.allclose(total.to_dense(),
                          0.1 * expected + 0.9 * expected.t())


@pytest.mark.parametrize('self_loops', [False, True])
@pytest.mark.parametrize('normalization', ['sym', 'asym', 'none'])
def test_adjacency_layout_equals_the_coalesced_matrix(self_loops,
                                                      normalization):
    # The CSR laid out directly equals the coalesced COO route entry for
    # entry: duplicates, users and items without edges, given degrees.
    from pyg_mmrec.graphs.sparse import to_sparse_csr
    g = torch.Generator().manual_seed(3)
    num_users, num_items = 9, 7
    edge_index = torch.stack([torch.randint(num_users - 2, (40, ),
                                            generator=g),
                              torch.randint(num_items - 1, (40, ),
                                            generator=g)])
    degrees = (torch.rand(num_users, generator=g) + 1,
               torch.rand(num_items, generator=g) + 1)
    for deg in (None, degrees):
        adj = bipartite_adjacency(edge_index, num_users, num_items,
                                  normalization=normalization,
                                  self_loops=self_loops,
                                  exponents=(-0.5, -0.4), degrees=deg)
        dense = torch.zeros(num_users + num_items, num_users + num_items)
        pairs = torch.unique(edge_index, dim=1)
        dense[pairs[0], num_users + pairs[1]] = 1
        dense[num_users + pairs[1], pairs[0]] = 1
        if self_loops:
            dense += torch.eye(num_users + num_items)
        if normalization != 'none':
            d = (dense.sum(1) if deg is None else
                 torch.cat(deg) + float(self_loops))
            a, b = (-0.5, -0.5) if normalization == 'sym' else (-0.5, -0.4)
            d_a = torch.where(d > 0, d.pow(a), torch.zeros_like(d))
            d_b = torch.where(d > 0, d.pow(b), torch.zeros_like(d))
            dense = d_a[:, None] * dense * d_b[None, :]
        reference = to_sparse_csr(dense.nonzero().t(),
                                  dense[dense != 0], dense.shape)
        assert torch.equal(adj.crow_indices(), reference.crow_indices())
        assert torch.equal(adj.col_indices(), reference.col_indices())
        assert torch.allclose(adj.values(), reference.values())
        assert torch.allclose(adj.to_dense(), dense)
