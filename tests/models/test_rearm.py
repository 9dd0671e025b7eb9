import numpy as np
import pytest
import torch
from trainer_factory import make_trainer

from pyg_mmrec.data import add_synthetic_features, make_synthetic
from pyg_mmrec.data.hetero import ITEM, build_hetero_data, split_edge_index
from pyg_mmrec.loader import BPRBatch
from pyg_mmrec.models import REARM
from pyg_mmrec.train import Trainer
from pyg_mmrec.train.checkpoint import seed_everything

SMALL = dict(embedding_dim=16, user_knn_k=5, item_knn_k=3)


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=120, num_items=80, seed=2)


def test_users_and_items_without_training_interactions_are_finite():
    # user 3 has only a test item (a cold user: the reader drops that
    # pair, the user stays a node without edges), item 5 no interaction
    rng = np.random.default_rng(0)
    user = np.array([0, 0, 1, 1, 2, 2, 0, 1, 3, 2])
    item = np.array([0, 1, 1, 2, 2, 3, 4, 4, 0, 4])
    split = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    feats = {'image': rng.normal(size=(6, 4)).astype(np.float32),
             'text': rng.normal(size=(6, 3)).astype(np.float32)}
    data = build_hetero_data(user, item, split, 4, 6, feats)
    model = REARM(data, embedding_dim=8, user_knn_k=2, item_knn_k=2)
    assert torch.equal(model.user_features[0][3], torch.zeros(4))
    batch_terms = make_trainer(model, data, batch_size=4).train_epoch(1)
    assert all(np.isfinite(v) for v in batch_terms.values())
    model.eval()
    assert torch.isfinite(model.score(torch.arange(4))).all()


def test_faithful_negatives_avoid_held_out_items_and_the_default_does_not(
        data):
    held = torch.cat([split_edge_index(data, 'val'),
                      split_edge_index(data, 'test')], dim=1)
    hits = {}
    for faithful in (False, True):
        model = REARM(data, faithful=faithful, **SMALL)
        source = Trainer(model, data, progress=False).source
        user = held[0].repeat(200)
        gen = torch.Generator().manual_seed(0)
        neg = source.exclude.uniform_negatives(user, gen)
        keys = set((held[0] * 80 + held[1]).tolist())
        hits[faithful] = sum(k in keys for k in (user * 80 + neg).tolist())
        assert not source.graph.contains(user, neg).any()  # never a positive
    assert hits[True] == 0 and hits[False] > 0


def test_faithful_detaches_the_meta_network_and_allows_full_dropout(data):
    with pytest.raises(ValueError, match='self_dropout'):
        REARM(data, self_dropout=1.0, **SMALL)
    for faithful in (False, True):
        seed_everything(0)
        model = REARM(data, faithful=faithful, self_dropout=1.0 if faithful
                      else 0.4, **SMALL).train()
        user, pos = split_edge_index(data, 'train')[:, :32]
        terms = model(BPRBatch(user, pos, (pos + 1) % 80))
        sum(terms.values()).backward()
        meta_grad = model.item_meta.meta.weight.grad
        assert (meta_grad is None) == faithful
        if faithful:  # s_drop = 1: the self-attention adds nothing in training
            attn = model.self_attention[0]
            x = torch.randn(4, 16)
            assert torch.equal(attn(x), torch.zeros(4, 16))


def test_two_modalities_are_required(data):
    tri = add_synthetic_features(data, {'audio': 6}, seed=0)
    with pytest.raises(ValueError, match='two modalities'):
        REARM(tri, **SMALL)
    single = data.clone()
    del single[ITEM]['x_text']
    with pytest.raises(ValueError, match='two modalities'):
        REARM(single, **SMALL)


def test_normalize_features_gives_unit_item_rows_and_keeps_the_item_graph(
        data):
    raw = data.clone()
    for m in ('image', 'text'):  # rows of very different lengths
        raw[ITEM][f'x_{m}'] = raw[ITEM][f'x_{m}'] * torch.linspace(
            0.5, 40.0, 80).view(-1, 1)
    plain = REARM(raw, **SMALL)
    unit = REARM(raw, normalize_features=True, **SMALL)
    for x, y in zip(unit.item_features, plain.item_features):
        torch.testing.assert_close(x.norm(dim=1), torch.ones(80))
        torch.testing.assert_close(x, torch.nn.functional.normalize(y))
    # the users' interest features are the means of the unit rows
    user, item = split_edge_index(raw, 'train')
    u = int(user[0])
    rows = unit.item_features[0][item[user == u]]
    torch.testing.assert_close(unit.user_features[0][u], rows.mean(0))
    # cosine kNN: the similarity part of the item graph does not change
    # (item_co_weight and the co-occurrence part are the same in both)
    assert torch.allclose(unit.item_graph.to_dense(),
                          plain.item_graph.to_dense(), atol=1e-6)


@pytest.mark.parametrize('train_features', [True, False])
def test_train_features_false_keeps_the_tables_fixed_without_state(
        data, train_features):
    seed_everything(0)
    model = REARM(data, train_features=train_features, **SMALL)
    tables = [*model.item_features, *model.user_features]
    before = [t.detach().clone() for t in tables]
    proj = model.item_projections[0].weight.detach().clone()
    trainer = make_trainer(model, data, batch_size=256)
    trainer.train_epoch(1, max_batches=2)
    moved = [not torch.equal(t, b) for t, b in zip(tables, before)]
    assert all(moved) if train_features else not any(moved)
    # Only trained tables hold AdamW moments; the rest of the model trains.
    assert all((t in trainer.optimizer.state) == train_features
               for t in tables)
    assert not torch.equal(model.item_projections[0].weight, proj)
    assert all(t.requires_grad == train_features for t in tables)
    # Fixed tables are rebuilt from the data, not checkpointed, and the
    # item ones are the dataset's own tensors.
    keys = [k for k in model.state_dict() if k.endswith('_features.0')]
    assert len(keys) == (2 if train_features else 0)
    shared = [t.data_ptr() == data['item'][f'x_{m}'].data_ptr()
              for t, m in zip(model.item_features, model.modalities)]
    assert all(shared) != train_features


def dense_info_nce(x, y, temperature):
    r"""InfoNCE between the rows of two views, cosine logits, every row
    against all rows (models.md 4.4, ``ssl_loss``)."""
    logits = (torch.nn.functional.normalize(x, dim=1) @
              torch.nn.functional.normalize(y, dim=1).t()) / temperature
    return (torch.logsumexp(logits, dim=1) - logits.diag()).mean()


def dense_orthogonality(x, y, eps=1e-6):
    r"""Mean over the :math:`d \times d` entries of :math:`(X^\top Y)^2`,
    columns centred over the rows, rows divided by their norm (models.md
    4.4, ``cal_diff_loss``)."""
    def standardise(t):
        t = t - t.mean(dim=0)
        return t / (t.norm(dim=1, keepdim=True) + eps)
    return (standardise(x).t() @ standardise(y)).pow(2).mean()


def test_loss_terms_by_value_with_distinct_weights():
    """BPR, the modal-shared InfoNCE (weighted by ``cl_weight``, over the
    batch's distinct users and distinct positive and negative items) and
    the modal-unique orthogonality term (weighted by ``diff_weight``, over
    the batch's users with duplicates and its positive items, whose rows
    follow the users' in the channel table), against dense formulas."""
    data = make_synthetic(num_users=40, num_items=30, seed=6)
    seed_everything(0)
    cl_weight, diff_weight, tau = 0.3, 0.07, 0.6
    model = REARM(data, embedding_dim=8, user_knn_k=3, item_knn_k=3,
                  self_dropout=0.0, mutual_dropout=0.0, cl_weight=cl_weight,
                  diff_weight=diff_weight, cl_temperature=tau).train()
    user, pos = split_edge_index(data, 'train')[:, ::7][:, :12]
    user = torch.cat([user, user[:3]])  # duplicate users count twice
    pos = torch.cat([pos, (pos[:3] + 5) % 30])
    neg = (pos * 7 + 3) % 30
    assert user.unique().numel() < user.numel()
    assert int(pos.max()) < 40  # an item row read as a user row would exist
    terms = model(BPRBatch(user, pos, neg))
    assert set(terms) == {'bpr', 'cl', 'diff'}

    with torch.no_grad():
        m, rep = model.channels()
    U, d = 40, 8
    x_u, x_i = rep[:U], rep[U:]
    bpr = -torch.nn.functional.logsigmoid(
        (x_u[user] * x_i[pos]).sum(-1) - (x_u[user] * x_i[neg]).sum(-1)).mean()
    m_u, m_i = m[:U], m[U:]
    users = user.unique()
    items = torch.cat([pos, neg]).unique()
    cl = (dense_info_nce(m_u[users, :d], m_u[users, d:], tau) +
          dense_info_nce(m_i[items, :d], m_i[items, d:], tau))
    diff = (dense_orthogonality(m_u[user, :d], m_u[user, d:]) +
            dense_orthogonality(m_i[pos, :d], m_i[pos, d:]))
    assert cl > 0 and diff > 0
    torch.testing.assert_close(terms['bpr'].detach(), bpr)
    torch.testing.assert_close(terms['cl'].detach(), cl_weight * cl)
    torch.testing.assert_close(terms['diff'].detach(), diff_weight * diff)
    # The weights are distinct enough for a swap (or a sign) to show.
    assert abs(float(cl_weight * cl - diff_weight * cl)) > 1e-3
    assert abs(float(diff_weight * diff - cl_weight * diff)) > 1e-4
