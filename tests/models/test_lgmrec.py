"""LGMRec and its hypergraph module against dense formulas on a tiny graph:
the encoder, the loss terms and their gradients (with recorded Gumbel
noise), deterministic vs faithful evaluation, one modality, training."""
import logging

import pytest
import torch
import torch.nn.functional as F

import pyg_mmrec.nn.hypergraph as hypergraph
from pyg_mmrec.data import make_synthetic
from pyg_mmrec.data.hetero import item_features
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.loader import BPRBatch
from pyg_mmrec.models import LGMRec
from pyg_mmrec.nn import GumbelHypergraph
from pyg_mmrec.train import Trainer, build_source
from pyg_mmrec.train.checkpoint import seed_everything

EPS = 1e-7
USERS = torch.tensor([0, 3, 3, 7, 12])
POS = torch.tensor([1, 4, 4, 0, 10])
NEG = torch.tensor([2, 2, 9, 5, 3])
SMALL = dict(embedding_dim=8, num_hyperedges=3)


@pytest.fixture(autouse=True)
def one_thread():
    r"""One thread (restored afterwards): these graphs are far too small to
    gain from two, and an intra-op thread that waits for a busy core slows
    every small kernel by a scheduling quantum."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def tiny(modalities, min_interactions=3):
    r"""14 users, 11 items; :obj:`min_interactions=3` gives users of 1 to 4
    training items and an item without any (the default 5 gives every user
    3, which hides a wrong user mean behind the row normalisation)."""
    return make_synthetic(num_users=14, num_items=11, mean_interactions=5,
                          min_interactions=min_interactions,
                          modalities=modalities, seed=3)


@pytest.fixture(scope='module')
def data():
    return tiny({'image': 6, 'text': 4})


def dense_graphs(data, U, I):  # noqa: E741
    r"""The binary R [U, I] and the normalised (U + I) adjacency, degrees
    + 1e-7 as the original."""
    user, item = train_graph(data).edge_index
    r = torch.zeros(U, I)
    r[user, item] = 1.0
    a = torch.zeros(U + I, U + I)
    a[:U, U:], a[U:, :U] = r, r.t()
    scale = (a.sum(1) + EPS).pow(-0.5)
    return r, scale[:, None] * a * scale[None, :]


def dense_final(model, data, noise=None):
    r"""(Z, [(g_u^m, g_i^m)]) from dense matrices; :obj:`noise` maps a
    modality to its (item, user) Gumbel draws (none: plain softmax)."""
    U, I = model.num_users, model.num_items  # noqa: E741
    r, adj = dense_graphs(data, U, I)
    e = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    layers = [e]
    for _ in range(model.num_ui_layers):
        layers.append(adj @ layers[-1])
    content = torch.stack(layers).mean(0)
    local, hyper = content, []
    for m, x in item_features(data).items():
        f = x @ model.projections[m].weight.t()
        h = torch.cat([r @ f / (r.sum(1, keepdim=True) + EPS), f])
        for _ in range(model.num_mm_layers):
            h = adj @ h
        local = local + F.normalize(h, dim=1)
        logits_i = x @ model.hypergraphs[m].weight
        logits_u = r @ logits_i
        g_i, g_u = noise[m] if noise else (0.0, 0.0)
        lam_i = torch.softmax((logits_i + g_i) / model.temperature, dim=1)
        lam_u = torch.softmax((logits_u + g_u) / model.temperature, dim=1)
        z = content[U:]
        for _ in range(model.num_hyper_layers):
            edges = lam_i.t() @ z
            z = lam_i @ edges
        hyper.append((lam_u @ edges, z))
    glob = torch.cat([sum(u for u, _ in hyper), sum(i for _, i in hyper)])
    return local + model.alpha * F.normalize(glob, dim=1), hyper


def dense_terms(model, final, hyper):
    U = model.num_users
    z_u, z_p, z_n = final[USERS], final[U + POS], final[U + NEG]

    def contrast(x, y, rows):  # summed over rows, softmax over all rows
        logits = F.normalize(x[rows], dim=1) @ F.normalize(y, dim=1).t()
        return F.cross_entropy(logits / model.temperature, rows,
                               reduction='sum')
    cl = sum(contrast(hyper[a][0], hyper[b][0], USERS)
             + contrast(hyper[a][1], hyper[b][1], POS)
             for a in range(len(hyper)) for b in range(a + 1, len(hyper)))
    reg = (z_u.norm() + z_p.norm() + z_n.norm()) / USERS.numel()
    return {'bpr': -F.logsigmoid((z_u * z_p).sum(-1)
                                 - (z_u * z_n).sum(-1)).mean(),
            'reg': model.reg_weight * reg, 'cl': model.cl_weight * cl}


@pytest.mark.parametrize('min_interactions', [3, 5])
@pytest.mark.parametrize('layers', [
    dict(), dict(num_ui_layers=1, num_mm_layers=0, num_hyper_layers=3)])
def test_eval_encode_equals_the_dense_formula(min_interactions, layers):
    data = tiny({'image': 6, 'text': 4}, min_interactions)
    torch.manual_seed(0)
    model = LGMRec(data, alpha=0.7, **SMALL, **layers).eval()
    final, _ = dense_final(model, data)
    user, item = model.encode()
    torch.testing.assert_close(torch.cat([user, item]), final)


@pytest.mark.parametrize('modalities', [
    {'image': 6, 'text': 4}, {'image': 6, 'text': 4, 'audio': 3}])
def test_loss_terms_and_gradients_equal_the_dense_formula(modalities,
                                                         monkeypatch):
    data = tiny(modalities)
    torch.manual_seed(0)
    model = LGMRec(data, keep_rate=1.0, num_hyper_layers=2, reg_weight=0.3,
                   cl_weight=0.05, temperature=0.5, **SMALL)
    draws, draw = [], hypergraph.gumbel_noise

    def recorded(like):
        draws.append(draw(like))
        return draws[-1]
    monkeypatch.setattr(hypergraph, 'gumbel_noise', recorded)
    terms = model(BPRBatch(USERS, POS, NEG))
    # one item draw [I, H] then one user draw [U, H] per modality, in order
    assert [tuple(d.shape) for d in draws] == [(11, 3), (14, 3)] * len(
        modalities)
    noise = {m: (draws[2 * k], draws[2 * k + 1])
             for k, m in enumerate(modalities)}
    ref = dense_terms(model, *dense_final(model, data, noise))
    assert set(terms) == set(ref)
    for key in ref:
        torch.testing.assert_close(terms[key], ref[key])
    params = dict(model.named_parameters())
    got = torch.autograd.grad(sum(terms.values()), list(params.values()))
    want = torch.autograd.grad(sum(ref.values()), list(params.values()))
    for name, g, w in zip(params, got, want):
        assert g.abs().sum() > 0, name  # every parameter is used
        torch.testing.assert_close(g, w, msg=name)


def test_evaluation_is_deterministic_unless_faithful(data):
    torch.manual_seed(0)
    model = LGMRec(data, **SMALL).eval()
    first = torch.cat(model.encode())
    torch.testing.assert_close(torch.cat(model.encode()), first, rtol=0,
                               atol=0)
    faithful = LGMRec(data, faithful=True, **SMALL).eval()
    faithful.load_state_dict(model.state_dict())
    noisy = torch.cat(faithful.encode())
    assert not torch.allclose(noisy, first)
    assert not torch.allclose(torch.cat(faithful.encode()), noisy)
    # training draws noise whatever the setting; the eval cache is per
    # evaluation
    model.train()
    assert not torch.allclose(torch.cat(model.encode()), first)
    faithful.eval()
    users = torch.arange(4)
    assert torch.equal(faithful.score(users), faithful.score(users))


def test_one_modality_has_a_zero_contrast_and_warns(caplog):
    data = tiny({'image': 6})
    with caplog.at_level(logging.WARNING, logger='pyg_mmrec.models.lgmrec'):
        model = LGMRec(data, **SMALL)
    assert any("'cl' term is 0" in r.getMessage() for r in caplog.records)
    terms = model(BPRBatch(USERS, POS, NEG))
    assert terms['cl'].dim() == 0 and terms['cl'].item() == 0.0
    assert torch.isfinite(terms['bpr']) and terms['bpr'] > 0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='pyg_mmrec.models.lgmrec'):
        LGMRec(tiny({'image': 6, 'text': 4}), **SMALL)
        LGMRec(data, cl_weight=0.0, **SMALL)
    assert not caplog.records


def test_short_training_improves_validation_recall():
    data = make_synthetic(num_users=200, num_items=120, mean_interactions=10,
                          modalities={'image': 16, 'text': 8}, seed=0)
    seed_everything(0)
    model = LGMRec(data, embedding_dim=16)
    trainer = Trainer(model, data, progress=False, lr=0.01,
                      source=build_source(model, data, batch_size=256))
    before = trainer.evaluate('val')['recall@20']
    losses = [trainer.train_epoch(epoch)['loss'] for epoch in range(1, 9)]
    assert losses[-1] < 0.85 * losses[0]
    assert trainer.evaluate('val')['recall@20'] > before + 0.02


def test_hypergraph_module_and_gumbel_noise(monkeypatch):
    torch.manual_seed(0)
    hyper = GumbelHypergraph(5, num_hyperedges=3, num_layers=2,
                             temperature=0.5, dropout=0.5)
    x, z = torch.randn(4, 5), torch.randn(4, 2)
    r = torch.tensor([[1., 0., 1., 1.], [0., 1., 0., 0.]])
    # evaluation without noise: the plain softmax, no dropout
    hyper.eval()
    z_u, z_i = hyper(x, z, r.to_sparse_csr())
    lam_i = torch.softmax(x @ hyper.weight / 0.5, dim=1)
    lam_u = torch.softmax(r @ x @ hyper.weight / 0.5, dim=1)
    edges = lam_i.t() @ (lam_i @ (lam_i.t() @ z))
    torch.testing.assert_close(z_i, lam_i @ edges)
    torch.testing.assert_close(z_u, lam_u @ edges)
    # training: dropout zeroes assignments and scales the rest by 2
    hyper.train()
    lam = hyper.assign(torch.zeros(200, 3), noise=False)
    kept = lam != 0
    assert 0 < int(kept.sum()) < lam.numel()
    torch.testing.assert_close(lam[kept], torch.full_like(lam[kept], 2 / 3))
    # g = -log(-log u) of the global stream's u
    torch.manual_seed(1)
    g = hypergraph.gumbel_noise(torch.empty(20000))
    torch.manual_seed(1)
    torch.testing.assert_close(g, -torch.log(-torch.log(torch.rand(20000))))
    assert abs(g.mean().item() - 0.5772) < 0.03  # Euler-Mascheroni
    # the noise is finite even where u hits 0 (rand's range is [0, 1))
    monkeypatch.setattr(torch, 'rand_like', lambda t: torch.zeros_like(t))
    assert torch.isfinite(hypergraph.gumbel_noise(torch.empty(3))).all()
    for kwargs in (dict(num_hyperedges=0), dict(num_layers=0),
                   dict(temperature=0.0), dict(dropout=1.0)):
        with pytest.raises(ValueError):
            GumbelHypergraph(5, **{'num_hyperedges': 3, **kwargs})


def test_bad_settings_and_no_subgraphs(data):
    with pytest.raises(ValueError, match='keep_rate'):
        LGMRec(data, keep_rate=0.0)
    with pytest.raises(ValueError, match='needs item features'):
        LGMRec(make_synthetic(num_users=14, num_items=11, modalities={},
                              seed=3))
    assert not LGMRec.supports_subgraph
