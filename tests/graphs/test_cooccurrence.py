import pytest
import torch

from pyg_mmrec.graphs import (
    cooccurrence_graph,
    to_sparse_csr,
    topk_entries_per_row,
    topk_per_row,
)
from pyg_mmrec.graphs.bipartite import unique_pairs
from pyg_mmrec.graphs.cooccurrence import (
    cap_per_node,
    capped_cooccurrence_topk,
)


def random_pairs(num_users, num_items, num_edges, seed):
    gen = torch.Generator().manual_seed(seed)
    user = torch.randint(num_users, (num_edges, ), generator=gen)
    item = torch.randint(num_items, (num_edges, ), generator=gen)
    return torch.stack([user, item])


def dense_reference(pairs, num_users, num_items, side):
    r = torch.zeros(num_users, num_items)
    r[pairs[0], pairs[1]] = 1  # duplicates collapse to one
    c = r.t() @ r if side == 'item' else r @ r.t()
    return c.fill_diagonal_(0)


def test_cooccurrence_hand_example():
    # u0-{i0, i1, i2}, u1-{i1, i2}, u2-{i2}; (u0, i0) duplicated.
    pairs = torch.tensor([[0, 0, 0, 1, 1, 2, 0], [0, 1, 2, 1, 2, 2, 0]])
    items = cooccurrence_graph(pairs, 3, 3, side='item')
    assert items.layout == torch.sparse_csr
    assert items.to_dense().tolist() == [[0, 1, 1], [1, 0, 2], [1, 2, 0]]
    users = cooccurrence_graph(pairs, 3, 3, side='user')
    assert users.to_dense().tolist() == [[0, 2, 1], [2, 0, 1], [1, 1, 0]]
    # The diagonal is removed, not stored as zeros:
    assert items.values().numel() == 6 and bool((items.values() > 0).all())


@pytest.mark.parametrize('num_users,num_items,num_edges', [(10, 8, 30),
                                                           (60, 45, 400)])
@pytest.mark.parametrize('side', ['item', 'user'])
def test_cooccurrence_matches_dense(num_users, num_items, num_edges, side):
    pairs = random_pairs(num_users, num_items, num_edges, seed=num_edges)
    out = cooccurrence_graph(pairs, num_users, num_items, side=side)
    ref = dense_reference(pairs, num_users, num_items, side)
    assert out.shape == ref.shape
    assert torch.equal(out.to_dense(), ref)
    crow, col = out.crow_indices(), out.col_indices()
    for r in range(out.size(0)):  # columns sorted within each row
        seg = col[crow[r]:crow[r + 1]]
        assert bool((seg[1:] > seg[:-1]).all())


def test_cooccurrence_torch_path_matches_scipy():
    # The torch.sparse.mm path (used off-CPU) on CPU tensors:
    from pyg_mmrec.graphs.bipartite import unique_pairs
    from pyg_mmrec.graphs.cooccurrence import (
        _drop_diagonal,
        _product_scipy,
        _product_torch,
    )

    pairs = unique_pairs(random_pairs(30, 20, 150, seed=3), 30, 20)
    a = _drop_diagonal(*_product_scipy(pairs, 30, 20, torch.float32))
    b = _drop_diagonal(*_product_torch(pairs, 30, 20, torch.float32))
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_cooccurrence_errors():
    with pytest.raises(ValueError, match='side'):
        cooccurrence_graph(torch.tensor([[0], [0]]), 1, 1, side='both')


def test_topk_per_row():
    dense = torch.tensor([
        [0, 3, 1, 3, 2],
        [5, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [1, 1, 1, 0, 4],
    ], dtype=torch.float)
    adj = dense.to_sparse_csr()
    edge_index, value = topk_entries_per_row(adj, 2)
    # Row order, then decreasing value, ties towards the lower column:
    assert edge_index.tolist() == [[0, 0, 1, 3, 3], [1, 3, 0, 4, 0]]
    assert value.tolist() == [3, 3, 5, 4, 1]
    out = topk_per_row(adj, 2)
    assert out.layout == torch.sparse_csr and out.shape == adj.shape
    expected = torch.tensor([
        [0, 3, 0, 3, 0],
        [5, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [1, 0, 0, 0, 4],
    ], dtype=torch.float)
    assert torch.equal(out.to_dense(), expected)
    # k larger than every row keeps everything; COO input works too.
    assert torch.equal(topk_per_row(dense.to_sparse(), 10).to_dense(), dense)
    with pytest.raises(ValueError, match='positive'):
        topk_per_row(adj, 0)


def test_topk_per_row_random():
    pairs = random_pairs(50, 40, 300, seed=5)
    counts = cooccurrence_graph(pairs, 50, 40, side='item')
    k = 3
    out = topk_per_row(counts, k).to_dense()
    dense = counts.to_dense()
    nnz_per_row = (dense > 0).sum(1)
    assert torch.equal((out > 0).sum(1), nnz_per_row.clamp(max=k))
    # Every kept value is at least every dropped value of its row:
    dropped = torch.where((dense > 0) & (out == 0), dense, 0).max(1).values
    kept_min = torch.where(out > 0, out, float('inf')).min(1).values
    assert bool((kept_min >= dropped).all())
    assert torch.equal(out, torch.where(out > 0, dense, 0))
    # Round-trip through to_sparse_csr keeps the entries:
    edge_index, value = topk_entries_per_row(counts, k)
    assert torch.equal(to_sparse_csr(edge_index, value, 40).to_dense(), out)


# The capped co-occurrence top-k (REARM at a million users) ----------------
def power_law_pairs(num_users=120, num_items=40, seed=0):
    r"""A few popular items (many users each) and a long tail."""
    gen = torch.Generator().manual_seed(seed)
    weight = 1.0 / torch.arange(1, num_items + 1).float() ** 1.2
    item = torch.multinomial(weight, 6 * num_users, replacement=True,
                             generator=gen)
    user = torch.randint(num_users, (6 * num_users, ), generator=gen)
    return torch.stack([user, item])


def dense_topk(counts, k):
    r"""Per row, the k largest positive entries by (count desc, column asc)
    of a dense matrix: (row, col, value) sorted the same way."""
    rows, cols, values = [], [], []
    for r in range(counts.size(0)):
        nz = counts[r].nonzero().view(-1).tolist()
        nz.sort(key=lambda c: (-counts[r, c].item(), c))
        for c in nz[:k]:
            rows.append(r)
            cols.append(c)
            values.append(counts[r, c].item())
    return (torch.tensor([rows, cols]),
            torch.tensor(values, dtype=torch.float64))


@pytest.mark.parametrize('side', ['user', 'item'])
def test_capped_cooccurrence_equals_exact_when_the_cap_is_not_binding(side):
    pairs = power_law_pairs()
    graph_side = 'item' if side == 'item' else 'user'
    exact = topk_entries_per_row(
        cooccurrence_graph(pairs, 120, 40, side=graph_side,
                           dtype=torch.float64), 5)
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    # small blocks of rows: the blocking must not change anything
    capped = capped_cooccurrence_topk(pairs, 120, 40, 5, cap=10**6,
                                      side=side, generator=gen,
                                      block_pairs=50)
    assert torch.equal(capped[0], exact[0])
    assert torch.equal(capped[1], exact[1])
    assert torch.equal(gen.get_state(), state)  # nothing drawn


@pytest.mark.parametrize('side', ['user', 'item'])
def test_capped_cooccurrence_matches_a_dense_reference(side):
    pairs = unique_pairs(power_law_pairs(), 120, 40)
    cap = 6
    oriented = pairs if side == 'user' else pairs.flip(0)
    n, m = (120, 40) if side == 'user' else (40, 120)
    kept = cap_per_node(oriented, m, cap, torch.Generator().manual_seed(1))
    # each node of the other side keeps min(degree, cap) of its pairs
    assert torch.equal(torch.bincount(kept[1], minlength=m),
                       torch.bincount(oriented[1], minlength=m).clamp(
                           max=cap))
    keys = oriented[0] * m + oriented[1]
    assert torch.isin(kept[0] * m + kept[1], keys).all()
    assert (torch.bincount(oriented[1], minlength=m) > cap).any()
    r = torch.zeros(n, m, dtype=torch.float64)
    r[oriented[0], oriented[1]] = 1
    s = torch.zeros(n, m, dtype=torch.float64)
    s[kept[0], kept[1]] = 1
    counts = (r @ s.t()).fill_diagonal_(0)
    ref_index, ref_value = dense_topk(counts, 5)
    index, value = capped_cooccurrence_topk(
        pairs, 120, 40, 5, cap=cap, side=side,
        generator=torch.Generator().manual_seed(1), block_pairs=64)
    assert torch.equal(index, ref_index)
    assert torch.equal(value, ref_value)
    # and it is not the exact top-k: the cap binds
    exact = dense_topk(dense_reference(pairs, 120, 40, side).double(), 5)
    assert not (torch.equal(index, exact[0]) and
                torch.equal(value, exact[1]))


def test_cap_per_node_is_deterministic_given_the_seed():
    pairs = unique_pairs(power_law_pairs(), 120, 40)
    a, b, c = (cap_per_node(pairs, 40, 4, torch.Generator().manual_seed(s))
               for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
