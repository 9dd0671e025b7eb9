"""LATTICE against the dense construction of its reference code (dense
item x item similarity, top-k, diagonal degree products) on a small
graph: the latent graph's values and gradients, the loss terms, and the
graph schedule (every batch, or the original's first batch per epoch)."""
import pytest
import torch
import torch.nn.functional as F
from test_mgcn import dense_knn

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.data.hetero import item_features
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.loader import BPRBatch
from pyg_mmrec.models import LATTICE


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=14, num_items=11, mean_interactions=5,
                          modalities={'image': 6, 'text': 4}, seed=3)


def dense_latent_graph(model):
    r"""(1 - lambda) N(sum_m alpha_m K_m) + lambda sum_m alpha_m S0_m."""
    alpha = torch.softmax(model.modal_weight, dim=0)
    k = model.knn_k
    learned, frozen = 0, 0
    for a, (m, x) in zip(alpha, model_features(model).items()):
        f = F.normalize(model.projected(m), dim=1)
        sim = f @ f.t()
        idx = sim.detach().topk(k, dim=1).indices
        mask = torch.zeros_like(sim).scatter_(1, idx, 1.0)
        learned = learned + a * sim * mask
        frozen = frozen + a * dense_knn(x, k)
    deg = learned.sum(1).pow(-0.5)
    learned = deg[:, None] * learned * deg[None, :]
    lam = model.lambda_coeff
    return (1 - lam) * learned + lam * frozen


def model_features(model):
    return {m: item_features(model.data)[m] for m in model.modalities}


def dense_terms(model, data, users, pos, neg):
    U, I = model.num_users, model.num_items  # noqa: E741
    user, item = train_graph(data).edge_index
    a = torch.eye(U + I)
    a[user, U + item] = a[U + item, user] = 1.0
    adj = a / a.sum(1, keepdim=True)  # D^-1 (A + I)
    x = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    layers = [x]
    for _ in range(model.num_ui_layers):
        layers.append(adj @ layers[-1])
    h = torch.stack(layers).mean(0)
    graph = dense_latent_graph(model)
    item_h = F.normalize(graph @ model.item_embedding.weight, dim=1)
    e_u, e_i = h[:U], h[U:] + item_h
    u, p, n = e_u[users], e_i[pos], e_i[neg]
    reg = (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / (
        2 * users.numel())
    return {'bpr': -F.logsigmoid((u * p).sum(-1) - (u * n).sum(-1)).mean(),
            'reg': model.reg_weight * reg}


USERS = torch.tensor([0, 3, 3, 7, 12])
POS = torch.tensor([1, 4, 4, 0, 10])
NEG = torch.tensor([2, 2, 9, 5, 3])


def build(data, **kwargs):
    torch.manual_seed(0)
    model = LATTICE(data, embedding_dim=8, feature_dim=5, knn_k=3,
                    reg_weight=0.3, **kwargs)
    model.data = data
    with torch.no_grad():  # unequal modality weights
        model.modal_weight.copy_(torch.tensor([0.3, -0.4]))
    return model


def test_sparse_latent_graph_equals_the_dense_construction(data):
    model = build(data)
    edge_index, value = model.learned_values()
    sparse = torch.sparse_coo_tensor(edge_index, value, (11, 11),
                                     check_invariants=True).to_dense()
    alpha = torch.softmax(model.modal_weight, dim=0)
    want = (dense_latent_graph(model) - model.lambda_coeff * sum(
        a * dense_knn(x, 3) for a, x in zip(
            alpha, model_features(model).values()))) / (
        1 - model.lambda_coeff)
    torch.testing.assert_close(sparse, want)
    # the gradients of a function of the graph, through the values only
    probe = torch.randn(11, 11)
    params = [model.projections['image'].weight, model.features.text,
              model.modal_weight]
    got = torch.autograd.grad((sparse * probe).sum(), params)
    wanted = torch.autograd.grad((want * probe).sum(), params)
    for g, w in zip(got, wanted):
        torch.testing.assert_close(g, w)


def test_loss_terms_and_gradients_equal_the_dense_formula(data):
    model = build(data)
    model.on_epoch_start(1)
    terms = model(BPRBatch(USERS, POS, NEG))
    ref = dense_terms(model, data, USERS, POS, NEG)
    assert set(terms) == set(ref)
    for key in ref:
        torch.testing.assert_close(terms[key], ref[key])
    params = dict(model.named_parameters())
    got = torch.autograd.grad(sum(terms.values()), list(params.values()))
    want = torch.autograd.grad(sum(ref.values()), list(params.values()))
    for name, g, w in zip(params, got, want):
        torch.testing.assert_close(g, w, msg=name)
    assert params['modal_weight'] is not None
    assert got[list(params).index('projections.image.weight')].abs().sum() > 0


def graph_gradient(model):
    loss = sum(model(BPRBatch(USERS, POS, NEG)).values())
    grad = torch.autograd.grad(loss, [model.projections['image'].weight,
                                      model.modal_weight], allow_unused=True)
    return [0.0 if g is None else g.abs().sum().item() for g in grad]


def test_the_graph_learns_on_every_batch_or_the_first_of_each_epoch(data):
    model = build(data)
    model.train()
    model.on_epoch_start(1)
    assert all(g > 0 for g in graph_gradient(model))
    assert all(g > 0 for g in graph_gradient(model))  # second batch too
    faithful = build(data, faithful=True)
    faithful.train()
    faithful.on_epoch_start(1)
    assert all(g > 0 for g in graph_gradient(faithful))
    assert graph_gradient(faithful) == [0.0, 0.0]  # detached afterwards
    faithful.on_epoch_start(2)
    assert all(g > 0 for g in graph_gradient(faithful))


def test_the_pairs_are_saved_with_the_weights(data):
    model = build(data)
    with torch.no_grad():  # other projections select other pairs
        model.projections['image'].weight.mul_(-3.0)
    model.on_epoch_start(1)
    model.eval()
    scores = model.score(torch.arange(5))
    fresh = build(data)
    assert not torch.equal(fresh.neighbors_image, model.neighbors_image)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    torch.testing.assert_close(fresh.score(torch.arange(5)), scores)
    assert torch.equal(fresh.neighbors_image, model.neighbors_image)
