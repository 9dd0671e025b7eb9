"""DRAGON against dense formulas on a hand-made graph, and its user
co-occurrence graph against a brute-force construction."""
import io

import pytest
import torch
import torch.nn.functional as F

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.data.hetero import item_features
from pyg_mmrec.graphs import train_graph, urn_padded_slots
from pyg_mmrec.loader import BPRBatch
from pyg_mmrec.models import DRAGON


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=30, num_items=40, mean_interactions=4,
                          min_interactions=3,
                          modalities={'image': 6, 'text': 4}, seed=3)


def dense_interactions(data, U, I):  # noqa: E741
    user, item = train_graph(data).edge_index
    r = torch.zeros(U, I)
    r[user, item] = 1.0
    return r


def brute_force_lists(r, k):
    r"""Every user's top-k co-neighbours by shared items (ties: lower id),
    from the dense :math:`U \times U` counts and a Python sort."""
    counts = r @ r.t()
    counts.fill_diagonal_(0)
    out = []
    for u in range(r.size(0)):
        pairs = [(-int(c), v) for v, c in enumerate(counts[u].tolist())
                 if c > 0]
        out.append([(v, -c) for c, v in sorted(pairs)[:k]])
    return out


def dense_adjacency(r):
    U, I = r.shape  # noqa: E741
    a = torch.zeros(U + I, U + I)
    a[:U, U:], a[U:, :U] = r, r.t()
    deg = a.sum(1)
    scale = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    return scale[:, None] * a * scale[None, :]


def dense_knn(x, k):
    xn = F.normalize(x, dim=1)
    idx = (xn @ xn.t()).topk(k, dim=1).indices
    return torch.zeros(x.size(0), x.size(0)).scatter_(1, idx, 1.0 / k)


def test_user_graph_is_the_brute_force_top_k(data):
    k = 4
    model = DRAGON(data, user_k=k, embedding_dim=8, hidden_dim=8)
    r = dense_interactions(data, model.num_users, model.num_items)
    lists = brute_force_lists(r, k)
    full = short = lonely = 0
    for u, ranked in enumerate(lists):
        neighbors = model.user_neighbors[u].tolist()
        counts = model.user_counts[u].tolist()
        n = len(ranked)
        assert [(v, c) for v, c in zip(neighbors, counts)][:n] == ranked
        if n == 0:
            lonely += 1
            assert neighbors == [-1] * k
        elif n < k:  # padded with copies of its own slots
            short += 1
            assert set(zip(neighbors, counts)) == set(ranked)
        else:
            full += 1
    assert full and short and lonely  # every rule is exercised
    # G: softmax of the slots' counts, repeated slots summed, rows sum to 1
    # (0 without co-neighbour).
    g = model.user_graph()[0].to_dense()
    for u in range(model.num_users):
        expected = torch.zeros(model.num_users)
        if model.user_neighbors[u, 0] >= 0:
            w = torch.softmax(model.user_counts[u], 0).float()
            expected.index_add_(0, model.user_neighbors[u], w)
        torch.testing.assert_close(g[u], expected)


def test_urn_padding_draws_from_the_growing_list():
    # One node with two co-neighbours (a, b) and k = 4: a Polya urn gives
    # P(both pads are a) = 1/2 * 2/3 = 1/3 (uniform draws among a and b
    # would give 1/4).
    n = 20000
    row = torch.arange(n).repeat_interleave(2)
    col = torch.tensor([7, 9]).repeat(n)
    count = torch.tensor([2.0, 1.0], dtype=torch.float64).repeat(n)
    gen = torch.Generator().manual_seed(0)
    neighbors, counts = urn_padded_slots(torch.stack([row, col]), count,
                                         n, 4, generator=gen)
    assert (neighbors[:, :2] == torch.tensor([7, 9])).all()
    both_a = ((neighbors[:, 2] == 7) & (neighbors[:, 3] == 7)).double().mean()
    assert abs(float(both_a) - 1 / 3) < 0.015
    assert ((neighbors == 7) == (counts == 2.0)).all()  # counts travel along


def test_encode_and_loss_against_dense_formulas(data):
    torch.manual_seed(0)
    model = DRAGON(data, user_k=3, embedding_dim=5, hidden_dim=7, knn_k=3,
                   num_layers=2, reg_weight=0.1).eval()
    U, I = model.num_users, model.num_items  # noqa: E741
    r = dense_interactions(data, U, I)
    adj = dense_adjacency(r)
    feats = item_features(data)
    item_graph = (0.1 * dense_knn(feats['image'], 3)
                  + 0.9 * dense_knn(feats['text'], 3))
    users, items = [], []
    for j, m in enumerate(['image', 'text']):
        mlp = model.item_mlps[m]
        f = mlp[2](F.leaky_relu(mlp[0](feats[m]), 0.01))
        x = F.normalize(torch.cat([model.preferences[m], f]), dim=1)
        h = x + adj @ x + adj @ (adj @ x)
        users.append(model.user_modality_weight[:, j:j + 1] * h[:U])
        items.append(h[U:])
    user, item = torch.cat(users, 1), torch.cat(items, 1)
    g = torch.zeros(U, U)
    for u in range(U):
        if model.user_neighbors[u, 0] >= 0:
            g[u].index_add_(0, model.user_neighbors[u],
                            torch.softmax(model.user_counts[u], 0).float())
    z_u, z_i = user + g @ user, item + item_graph @ item
    enc_u, enc_i = model.encode()
    torch.testing.assert_close(enc_u, z_u, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(enc_i, z_i, atol=1e-5, rtol=1e-4)

    batch = BPRBatch(torch.tensor([0, 4, 4]), torch.tensor([1, 2, 5]),
                     torch.tensor([3, 0, 9]))
    terms = model(batch)
    s = lambda i: (z_u[batch.user] * z_i[i]).sum(-1)  # noqa: E731
    bpr = -torch.log2(torch.sigmoid(s(batch.pos) - s(batch.neg))).mean()
    reg = (model.user_modality_weight.pow(2).mean()
           + sum(p[batch.user].pow(2).mean()
                 for p in model.preferences.values()))
    torch.testing.assert_close(terms['bpr'], bpr, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(terms['reg'], 0.1 * reg)


def test_attentive_weights_start_as_a_softmax(data):
    model = DRAGON(data, embedding_dim=4, hidden_dim=4)
    torch.testing.assert_close(model.user_modality_weight.sum(1),
                               torch.ones(model.num_users))


def test_padding_is_redrawn_and_checkpointed(data):
    torch.manual_seed(1)
    model = DRAGON(data, user_k=6, embedding_dim=4, hidden_dim=4)
    before = model.user_neighbors.clone()
    model.on_epoch_start(1)
    assert not torch.equal(before, model.user_neighbors)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    model.eval()
    scores = model.score(torch.arange(5))
    buf.seek(0)
    other = DRAGON(data, user_k=6, embedding_dim=4, hidden_dim=4)
    other.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(other.eval().score(torch.arange(5)), scores)

