import pytest
import torch

from pyg_mmrec.graphs import (
    csr_dense_rows,
    csr_rows_mm,
    csr_transpose,
    drop_entries,
    expand_runs,
    to_sparse_csr,
    weighted_sum,
)
from pyg_mmrec.nn import sparse_mm


def random_csr(rows=6, cols=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dense = torch.rand(rows, cols, generator=gen)
    dense[dense < 0.5] = 0
    return dense, dense.to_sparse_csr()


def test_expand_runs():
    run, pos = expand_runs(torch.tensor([4, 0, 9]), torch.tensor([2, 0, 3]))
    assert run.tolist() == [0, 0, 2, 2, 2]
    assert pos.tolist() == [4, 5, 9, 10, 11]


def test_csr_dense_rows_and_transpose():
    dense, csr = random_csr()
    rows = torch.tensor([3, 0, 3, 5])
    assert torch.equal(csr_dense_rows(csr, rows), dense[rows])
    t = csr_transpose(csr)
    assert t.layout == torch.sparse_csr
    assert torch.equal(t.to_dense(), dense.t())


def test_csr_rows_mm_equals_the_rows_of_the_dense_product():
    dense, csr = random_csr(6, 5)
    rows = torch.tensor([4, 1, 4, 0])
    x = torch.randn(5, 3, requires_grad=True)
    out = csr_rows_mm(csr, rows, x)
    assert torch.allclose(out, (dense @ x)[rows], atol=1e-6)
    weight = torch.randn(4, 3)
    grad, = torch.autograd.grad((out * weight).sum(), x)
    ref = x.detach().requires_grad_()
    expected, = torch.autograd.grad(((dense @ ref)[rows] * weight).sum(), ref)
    assert torch.allclose(grad, expected, atol=1e-6)


@pytest.mark.parametrize('symmetric', [False, True])
def test_sparse_mm_gradient_uses_the_given_transpose(symmetric):
    dense, csr = random_csr(5, 5)
    if symmetric:
        dense = dense + dense.t()
        csr = dense.to_sparse_csr()
    x = torch.randn(5, 3, requires_grad=True)
    kwargs = ({'symmetric': True} if symmetric else
              {'adj_t': csr_transpose(csr)})
    out = sparse_mm(csr, x, **kwargs)
    assert torch.allclose(out, dense @ x, atol=1e-6)
    out.pow(2).sum().backward()
    expected = 2 * dense.t() @ (dense @ x)
    assert torch.allclose(x.grad, expected.detach(), atol=1e-5)


def test_drop_entries_keeps_a_share_and_rescales():
    n = 200
    index = torch.stack([torch.arange(n).repeat_interleave(10),
                         torch.arange(n * 10) % n])
    adj = to_sparse_csr(index, torch.full((n * 10, ), 0.3), n)
    kept = drop_entries(adj, 0.25, generator=torch.Generator().manual_seed(0))
    share = kept._nnz() / adj._nnz()
    assert 0.2 < share < 0.3
    assert torch.allclose(kept.values(), torch.full_like(kept.values(), 1.2))
    assert drop_entries(adj, 1.0) is adj
    with pytest.raises(ValueError, match='keep_rate'):
        drop_entries(adj, 0.0)


@pytest.mark.parametrize('shape', [(7, 5), (5, 9), (4, 4)])
def test_to_sparse_csr_sums_duplicates_and_sorts_columns(shape):
    # Unordered entries with duplicates against the dense sum; the CSR is
    # coalesced (each row's columns strictly increasing).
    gen = torch.Generator().manual_seed(sum(shape))
    num = 60
    edge_index = torch.stack([
        torch.randint(0, size, (num,), generator=gen) for size in shape])
    weight = torch.rand(num, generator=gen)
    dense = torch.zeros(shape).index_put_(tuple(edge_index), weight,
                                          accumulate=True)
    adj = to_sparse_csr(edge_index, weight, shape)
    torch.testing.assert_close(adj.to_dense(), dense)
    crow, col = adj.crow_indices(), adj.col_indices()
    assert crow[-1] == int((dense != 0).sum())
    for r in range(shape[0]):
        assert (col[crow[r]:crow[r + 1]].diff() > 0).all()
    other = to_sparse_csr(edge_index.flip(1), weight.flip(0), shape)
    total = weighted_sum([adj, other], [0.25, 2.0])
    torch.testing.assert_close(total.to_dense(), 2.25 * dense)
    empty = to_sparse_csr(torch.empty(2, 0, dtype=torch.long), None, shape)
    assert empty._nnz() == 0 and tuple(empty.shape) == shape
