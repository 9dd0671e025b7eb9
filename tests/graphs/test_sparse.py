import pytest
import torch

from pyg_mmrec.graphs import (
    csr_dense_rows,
    csr_rows_mm,
    csr_transpose,
    drop_entries,
    expand_runs,
    to_sparse_csr,
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
