"""MGCN and SMORE against dense formulas on a hand-made graph, and their
parts (the spectral filter, the max-pooled item graph)."""
import pytest
import torch
import torch.nn.functional as F

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.data.hetero import item_features
from pyg_mmrec.graphs import elementwise_max, to_sparse_csr, train_graph
from pyg_mmrec.loader import BPRBatch
from pyg_mmrec.models import MGCN, SMORE
from pyg_mmrec.nn import SpectralFilter


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=14, num_items=11, mean_interactions=5,
                          modalities={'image': 6, 'text': 4}, seed=3)


def dense_adjacency(data, U, I):  # noqa: E741
    user, item = train_graph(data).edge_index
    a = torch.zeros(U + I, U + I)
    a[user, U + item] = a[U + item, user] = 1.0
    deg = a.sum(1)
    scale = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    return scale[:, None] * a * scale[None, :]


def dense_knn(x, k):
    r"""Top-k cosine per row (self included), similarity values, weighted
    row degrees on both sides, from the dense similarity matrix."""
    xn = F.normalize(x, dim=1)
    sim = xn @ xn.t()
    val, idx = sim.topk(k, dim=1)
    kept = torch.zeros_like(sim).scatter_(1, idx, val)
    deg = kept.sum(1).pow(-0.5)
    return deg[:, None] * kept * deg[None, :]


def dense_views(model, data, feature, graphs, fuse):
    r"""(Z, S, C) of the whole graph from dense matrices; :obj:`feature`
    maps a view to its gating feature, :obj:`fuse` the views and C to S."""
    U, I = model.num_users, model.num_items  # noqa: E741
    adj = dense_adjacency(data, U, I)
    e0 = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    layers = [e0]
    for _ in range(model.num_ui_layers):
        layers.append(adj @ layers[-1])
    content = torch.stack(layers).mean(0)
    r = adj[:U, U:]
    hidden = []
    for view, graph in graphs.items():
        gate = model.purifiers[view][0]
        e = model.item_embedding.weight * torch.sigmoid(
            F.linear(feature(view), gate.weight, gate.bias))
        item = graph @ e
        hidden.append(torch.cat([r @ item, item]))
    side = fuse(torch.stack(hidden), content)
    return content + side, side, content


def projected(model, m):
    lin = model.projections[m]
    return F.linear(getattr(model.features, m), lin.weight, lin.bias)


def mgcn_fuse(model):
    fuser = model.fuser

    def fuse(hidden, content):
        q = fuser.query
        logits = torch.stack([q[2](torch.tanh(q[0](h))) for h in hidden])
        beta = torch.softmax(logits, dim=0)
        common = (beta * hidden).sum(0)
        side = common.clone()
        for h, p in zip(hidden, fuser.preferences):
            side = side + torch.sigmoid(p[0](content)) * (h - common)
        return side / 3
    return fuse


def loss_terms(model, final, side, content, users, pos, neg):
    U = model.num_users
    z_u, z_p, z_n = final[users], final[U + pos], final[U + neg]

    def nce(a, b):
        logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).t() / 0.2
        return F.cross_entropy(logits, torch.arange(a.size(0)))
    reg = (z_u.pow(2).sum() + z_p.pow(2).sum() + z_n.pow(2).sum()) / (
        2 * users.numel())
    return {'bpr': -F.logsigmoid((z_u * z_p).sum(-1)
                                 - (z_u * z_n).sum(-1)).mean(),
            'reg': model.reg_weight * reg,
            'cl': model.cl_weight * (nce(side[U + pos], content[U + pos])
                                     + nce(side[users], content[users]))}


USERS = torch.tensor([0, 3, 3, 7, 12])
POS = torch.tensor([1, 4, 4, 0, 10])
NEG = torch.tensor([2, 2, 9, 5, 3])


def check_terms_and_gradients(model, ref):
    terms = model(BPRBatch(USERS, POS, NEG))
    assert set(terms) == set(ref)
    for key in ref:
        torch.testing.assert_close(terms[key], ref[key])
    params = dict(model.named_parameters())
    got = torch.autograd.grad(sum(terms.values()), list(params.values()))
    want = torch.autograd.grad(sum(ref.values()), list(params.values()),
                               allow_unused=True)
    for name, g, w in zip(params, got, want):
        assert w is not None, name  # every parameter is used
        torch.testing.assert_close(g, w, msg=name)


def test_mgcn_loss_terms_and_gradients_equal_the_dense_formula(data):
    torch.manual_seed(0)
    model = MGCN(data, embedding_dim=8, num_ui_layers=2, knn_k=3,
                 reg_weight=0.3, cl_weight=0.5)
    feats = item_features(data)
    graphs = {m: dense_knn(x, 3) for m, x in feats.items()}
    final, side, content = dense_views(
        model, data, lambda m: projected(model, m), graphs, mgcn_fuse(model))
    check_terms_and_gradients(model, loss_terms(model, final, side, content,
                                                USERS, POS, NEG))
    user, item = model.encode()
    torch.testing.assert_close(torch.cat([user, item]), final)


def test_smore_loss_terms_and_gradients_equal_the_dense_formula(data):
    torch.manual_seed(0)
    model = SMORE(data, embedding_dim=8, num_ui_layers=2,
                  knn_k={'image': 3, 'text': 4}, reg_weight=0.3,
                  cl_weight=0.5)
    assert model.views == ['image', 'text', 'fusion']
    feats = item_features(data)
    graphs = {'image': dense_knn(feats['image'], 3),
              'text': dense_knn(feats['text'], 4)}
    present = (graphs['image'] != 0) | (graphs['text'] != 0)
    graphs['fusion'] = torch.where(
        present, torch.maximum(
            graphs['image'].masked_fill(graphs['image'] == 0, -1e9),
            graphs['text'].masked_fill(graphs['text'] == 0, -1e9)), 0.0)

    def spectrum(x):
        return torch.fft.rfft(x, dim=1, norm='ortho')

    def feature(view):
        gain = torch.view_as_complex(model.filters[view].weight)
        if view == 'fusion':
            s = spectrum(projected(model, 'image')) * spectrum(
                projected(model, 'text'))
        else:
            s = spectrum(projected(model, view))
        return torch.fft.irfft(s * gain, n=8, dim=1, norm='ortho')

    fuser = model.fuser

    def fuse(hidden, content):
        fusion = hidden[2]
        out = torch.sigmoid(fuser.preferences[2][0](content)) * fusion
        for k in range(2):
            q = fuser.queries[k]
            attn = torch.softmax(q[2](torch.tanh(q[0](fusion))), dim=1)
            out = out + (torch.sigmoid(fuser.preferences[k][0](content))
                         * attn * hidden[k])
        return out / 3
    final, side, content = dense_views(model, data, feature, graphs, fuse)
    check_terms_and_gradients(model, loss_terms(model, final, side, content,
                                                USERS, POS, NEG))


def test_spectral_filter_is_a_circular_convolution():
    torch.manual_seed(0)
    d = 6
    filt = SpectralFilter(d)
    with torch.no_grad():  # unit gains: the transforms alone
        filt.weight.copy_(torch.tensor([[1.0, 0.0]] * (d // 2 + 1)))
    a, b = torch.randn(3, d), torch.randn(3, d)
    torch.testing.assert_close(filt(a), a)
    conv = torch.stack([sum(a[:, j] * b[:, (k - j) % d] for j in range(d))
                        for k in range(d)], dim=1)
    torch.testing.assert_close(filt(a, b), conv / d ** 0.5)
    # a real gain g on every bin scales the row by g
    with torch.no_grad():
        filt.weight.copy_(torch.tensor([[2.5, 0.0]] * (d // 2 + 1)))
    torch.testing.assert_close(filt(a), 2.5 * a)


def test_elementwise_max_keeps_the_union_with_the_larger_value():
    a = to_sparse_csr(torch.tensor([[0, 0, 1], [0, 2, 1]]),
                      torch.tensor([0.5, -0.2, 0.3]), 3)
    b = to_sparse_csr(torch.tensor([[0, 2, 1], [0, 2, 1]]),
                      torch.tensor([0.4, 0.7, -0.1]), 3)
    got = elementwise_max([a, b]).to_dense()
    want = torch.tensor([[0.5, 0.0, -0.2],
                         [0.0, 0.3, 0.0],
                         [0.0, 0.0, 0.7]])
    torch.testing.assert_close(got, want)


def test_one_modality_and_fixed_features(data):
    one = make_synthetic(num_users=14, num_items=11, mean_interactions=5,
                         modalities={'image': 6}, seed=3)
    for cls in (MGCN, SMORE):
        model = cls(one, embedding_dim=8, knn_k=3, train_features=False)
        assert 'features.image' not in dict(model.named_parameters())
        terms = model(BPRBatch(USERS, POS, NEG))
        assert all(torch.isfinite(t) for t in terms.values())
    with pytest.raises(ValueError, match="'knn_k' must name every"):
        MGCN(data, knn_k={'image': 3})
