import pytest
import torch
from sampling_helpers import random_adjacency

from pyg_mmrec.graphs import csr_to_edge_index
from pyg_mmrec.graphs.receptive import receptive_field
from pyg_mmrec.nn import LightGCNConv, LightGCNEncoder, sparse_mm
from pyg_mmrec.nn.conv import COMBINES
from pyg_mmrec.testing import with_package


def asymmetric_adjacency():
    # A non-symmetric matrix: out = A @ x, row i gathers from columns j.
    dense = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.5]])
    return dense, dense.to_sparse_csr()


def test_lightgcn_conv_equals_dense():
    conv = LightGCNConv()
    assert str(conv) == 'LightGCNConv(symmetric=False)'
    adj = random_adjacency()
    x = torch.randn(adj.size(0), 4)
    out = conv(x, adj)
    assert out.size() == x.size()
    assert torch.allclose(out, adj.to_dense() @ x, atol=1e-6)

    dense, adj = asymmetric_adjacency()
    x = torch.randn(3, 2)
    assert torch.allclose(conv(x, adj), dense @ x)
    # edge_index input, messages flow edge_index[0] -> edge_index[1]:
    edge_index, weight = csr_to_edge_index(adj)
    assert torch.allclose(conv(x, edge_index.flip(0), weight), dense @ x)
    binary = (dense != 0).float()
    assert torch.allclose(conv(x, edge_index.flip(0)), binary @ x)


@with_package('torch_sparse')
def test_lightgcn_conv_sparse_tensor():
    from torch_sparse import SparseTensor

    conv = LightGCNConv()
    for dense, adj in [(random_adjacency().to_dense(), random_adjacency()),
                       asymmetric_adjacency()]:
        x = torch.randn(adj.size(0), 5)
        st = SparseTensor.from_dense(dense)
        assert torch.allclose(conv(x, st), conv(x, adj), atol=1e-6)
        assert torch.allclose(conv(x, st), dense @ x, atol=1e-6)
        # With gradients (the torch_sparse autograd path):
        x = x.clone().requires_grad_()
        conv(x, st).sum().backward()
        assert torch.allclose(x.grad, dense.t() @ torch.ones_like(x),
                              atol=1e-6)


def test_lightgcn_conv_gradient():
    conv = LightGCNConv()
    dense, adj = asymmetric_adjacency()
    x = torch.randn(3, 4, requires_grad=True)
    weight = torch.randn(3, 4)
    (conv(x, adj) * weight).sum().backward()
    assert torch.allclose(x.grad, dense.t() @ weight, atol=1e-6)


def test_symmetric_fast_path_has_the_exact_gradient():
    adj = random_adjacency(num_users=20, num_items=30, num_edges=120)
    weight = torch.randn(adj.size(0), 4)
    grads = []
    for symmetric in (False, True):
        x = torch.randn(adj.size(0), 4,
                        generator=torch.Generator().manual_seed(0))
        x.requires_grad_()
        out = LightGCNConv(symmetric=symmetric)(x, adj)
        assert torch.allclose(out, adj.to_dense() @ x.detach(), atol=1e-6)
        (out * weight).sum().backward()
        grads.append(x.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    assert torch.allclose(grads[1], adj.to_dense().t() @ weight, atol=1e-6)


@pytest.mark.parametrize('num_layers', [0, 1, 3])
def test_lightgcn_encoder_combine(num_layers):
    adj = random_adjacency(seed=num_layers)
    dense = adj.to_dense()
    x = torch.randn(adj.size(0), 8)
    layers = [x]
    for _ in range(num_layers):
        layers.append(dense @ layers[-1])

    enc = LightGCNEncoder(num_layers, combine='mean')
    assert str(enc) == f"LightGCNEncoder(num_layers={num_layers}, " \
        "combine='mean', symmetric=False)"
    hand_mean = sum(layers) / (num_layers + 1)
    assert torch.allclose(enc(x, adj), hand_mean, atol=1e-5)
    outs = enc.layer_outputs(x, adj)
    assert len(outs) == num_layers + 1 and outs[0] is x

    enc = LightGCNEncoder(num_layers, combine='sum')
    assert torch.allclose(enc(x, adj), sum(layers), atol=1e-5)
    enc = LightGCNEncoder(num_layers, combine='last')
    assert torch.allclose(enc(x, adj), layers[-1], atol=1e-5)


def test_lightgcn_encoder_gradient_and_errors():
    adj = random_adjacency()
    x = torch.randn(adj.size(0), 4, requires_grad=True)
    enc = LightGCNEncoder(2)
    enc.reset_parameters()
    enc(x, adj).pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='combine'):
        LightGCNEncoder(2, combine='concat')
    with pytest.raises(ValueError, match='num_layers'):
        LightGCNEncoder(-1)


def test_sparse_mm_equals_torch_sparse_mm():
    adj = random_adjacency(num_users=30, num_items=40, num_edges=90)
    x = torch.randn(adj.size(0), 5)
    # The fresh output is written, never read: the NaN that deterministic
    # mode puts in empty memory does not show.
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert torch.equal(sparse_mm(adj, x), torch.sparse.mm(adj, x))
    finally:
        torch.use_deterministic_algorithms(was)
    x.requires_grad_()
    out = sparse_mm(adj, x, symmetric=True)
    assert torch.equal(out, torch.sparse.mm(adj, x.detach()))
    out.sum().backward()
    assert torch.equal(x.grad, torch.sparse.mm(adj, torch.ones_like(out)))


@pytest.mark.parametrize('combine', COMBINES)
@pytest.mark.parametrize('num_layers', [0, 1, 3])
def test_forward_field_equals_the_rows_of_forward(combine, num_layers):
    adj = random_adjacency(num_users=30, num_items=40, num_edges=70, seed=1)
    enc = LightGCNEncoder(num_layers, combine=combine, symmetric=True)
    rows = torch.tensor([0, 5, 5, 31, 44, 69, 0])
    weight = torch.randn(rows.numel(), 8)
    x = torch.randn(adj.size(0), 8, requires_grad=True)
    full = enc(x, adj)[rows]
    (full * weight).sum().backward()
    grad, x.grad = x.grad, None

    field = receptive_field(adj, rows, num_layers)
    assert field.nodes[-1].numel() < adj.size(0)
    part = enc.forward_field(x[field.nodes[-1]], field)[field.index]
    assert torch.equal(part, full)  # the same sums in the same order
    (part * weight).sum().backward()
    assert torch.allclose(x.grad, grad, atol=1e-6)
    with pytest.raises(ValueError, match='hops'):
        enc.forward_field(x, receptive_field(adj, rows, num_layers + 1))
