import pytest
import torch
import torch.nn.functional as F

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.data.hetero import item_features
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.loader import BPRBatch
from pyg_mmrec.models import BM3


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=14, num_items=11, mean_interactions=5,
                          modalities={'image': 6, 'text': 4}, seed=3)


def dense_reference(model, data, users, items):
    r"""BM3's loss terms from dense matrices (dropout 0: the targets are
    the online representations, detached)."""
    U, I = model.num_users, model.num_items  # noqa: E741
    user, item = train_graph(data).edge_index
    r = torch.zeros(U, I)
    r[user, item] = 1.0
    a = torch.zeros(U + I, U + I)
    a[:U, U:], a[U:, :U] = r, r.t()
    deg = a.sum(1)
    scale = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    adj = scale[:, None] * a * scale[None, :]
    e0 = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    layers = [e0]
    for _ in range(model.num_layers):
        layers.append(adj @ layers[-1])
    h = torch.stack(layers).mean(0)
    h_u, h_i = h[:U], h[U:] + model.item_embedding.weight
    p = model.predictor

    def c(x, y):
        return 1 - F.cosine_similarity(x, y.detach(), dim=-1).mean()
    u, i = h_u[users], h_i[items]
    rec = c(p(u), i) + c(p(i), u)
    align = mask = 0
    for m, x in item_features(data).items():
        lin = model.projections[m]
        f = F.linear(getattr(model.features, m)[items], lin.weight, lin.bias)
        align = align + c(p(f), i)
        mask = mask + c(p(f), f)
    reg = (h_u.norm() + h_i.norm()) / I
    return {'rec': rec, 'reg': model.reg_weight * reg,
            'align': model.cl_weight * align, 'mask': model.cl_weight * mask}


def test_loss_terms_and_gradients_equal_the_dense_formula(data):
    torch.manual_seed(0)
    model = BM3(data, embedding_dim=8, num_layers=2, dropout=0.0,
                reg_weight=0.3)
    users = torch.tensor([0, 3, 3, 7, 12])
    items = torch.tensor([1, 4, 4, 0, 10])
    terms = model(BPRBatch(users, items, None))
    ref = dense_reference(model, data, users, items)
    assert set(terms) == set(ref)
    for key in ref:
        torch.testing.assert_close(terms[key], ref[key])
    # stop-gradient on the targets: the gradients of the detached formula
    params = dict(model.named_parameters())
    assert 'features.image' in params  # the raw tables train (original)
    got = torch.autograd.grad(sum(terms.values()), list(params.values()))
    want = torch.autograd.grad(sum(ref.values()), list(params.values()),
                               allow_unused=True)
    for name, g, w in zip(params, got, want):
        torch.testing.assert_close(g, torch.zeros_like(g) if w is None else w,
                                   msg=name)


def test_scores_are_predictor_products_and_targets_are_dropped_out(data):
    torch.manual_seed(1)
    model = BM3(data, embedding_dim=8, dropout=0.5, train_features=False)
    assert 'features.image' not in dict(model.named_parameters())
    model.eval()
    h_u, h_i = model.propagate()
    users = torch.tensor([2, 5])
    torch.testing.assert_close(
        model.score(users),
        model.predictor(h_u[users]) @ model.predictor(h_i).t())
    model.train()
    batch = BPRBatch(torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), None)
    a, b = model(batch), model(batch)
    assert a['reg'] == b['reg']  # no randomness outside the targets
    assert a['rec'] != b['rec'] and a['mask'] != b['mask']


def test_batches_are_every_training_pair_once_without_negatives(data):
    model = BM3(data)
    graph = train_graph(data)
    source = model.batch_source(graph, 5)
    batches = list(source.batches(1, torch.Generator().manual_seed(0)))
    assert len(batches) == len(source)
    assert all(b.neg is None for b in batches)
    pairs = torch.cat([torch.stack([b.user, b.pos]) for b in batches], 1)
    key = lambda p: sorted((p[0] * 100 + p[1]).tolist())  # noqa: E731
    assert key(pairs) == key(graph.edge_index)
    with pytest.raises(ValueError, match='dropout'):
        BM3(data, dropout=1.0)
