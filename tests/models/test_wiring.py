"""Value tests of the models' wiring against dense formulas on a tiny graph.

Every expected value is computed here with dense tensors from the
hand-written training pairs below (no library graph builder is called).
Each of these bugs, injected alone, makes at least one test fail:

(a) LightGCN with one layer less:
    ``test_lightgcn_forward_is_the_dense_layer_mean`` (and the loss test).
(b) FREEDOM's kNN with ``k - 1``:
    ``test_freedom_item_graph_is_the_dense_knn_mix`` (and the FREEDOM and
    FMCNS forward / loss tests).
(c) FMCNS's ``lambda`` and ``1 - lambda`` swapped:
    ``test_fmcns_loss_terms_by_value``.
(d) FMCNS's evaluation propagating ``h`` instead of the generated mix:
    ``test_fmcns_eval_forward_mixes_the_generated_embeddings``.
(e) MDMNS's generated graph keeping each user's lowest-scored items:
    ``test_mdmns_generated_graph_keeps_the_top_denoised_items``.
(f) ``q_sample`` scaling ``x_0`` by ``alpha_bar`` instead of its square root on
    the noise-inside path: ``test_q_sample_paths_agree_with_the_closed_form``.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from pyg_mmrec.data.hetero import build_hetero_data
from pyg_mmrec.loader import BPRBatch
from pyg_mmrec.models import FMCNS, FREEDOM, MDMNS, LightGCN
from pyg_mmrec.nn.diffusion import GaussianDiffusion

NUM_USERS, NUM_ITEMS = 6, 5
TRAIN = [(0, 0), (0, 1), (1, 1), (1, 2), (1, 3), (2, 0), (2, 4), (3, 2),
         (3, 3), (4, 1), (4, 4), (5, 0), (5, 3)]
VAL = [(0, 2), (1, 4)]
TEST = [(2, 1), (3, 0)]
WEIGHTS = {'image': 0.3, 'text': 0.7}
# A batch with an item both positive and negative (last write wins in FMCNS):
BATCH = BPRBatch(user=torch.tensor([0, 1, 3, 5]),
                 pos=torch.tensor([1, 2, 3, 0]),
                 neg=torch.tensor([4, 0, 1, 2]))


@pytest.fixture(scope='module')
def data():
    pairs = TRAIN + VAL + TEST
    split = [0] * len(TRAIN) + [1] * len(VAL) + [2] * len(TEST)
    rng = np.random.RandomState(0)
    feats = {'image': rng.randn(NUM_ITEMS, 6).astype(np.float32),
             'text': rng.randn(NUM_ITEMS, 4).astype(np.float32)}
    return build_hetero_data(np.array([u for u, _ in pairs]),
                             np.array([i for _, i in pairs]),
                             np.array(split), NUM_USERS, NUM_ITEMS, feats,
                             name='tiny')


def sym_norm(a):
    """D^-1/2 A D^-1/2 with row-sum degrees; zero-degree rows stay zero."""
    deg = a.sum(dim=1)
    inv = torch.where(deg > 0, deg.clamp_min(1e-30).rsqrt(),
                      torch.zeros_like(deg))
    return inv[:, None] * a * inv[None, :]


def dense_bipartite(pairs, self_loops=False):
    """The (U + I)^2 symmetric user-item adjacency of ``pairs``, normalised."""
    n = NUM_USERS + NUM_ITEMS
    a = torch.zeros(n, n)
    for u, i in pairs:
        a[u, NUM_USERS + i] = a[NUM_USERS + i, u] = 1.0
    if self_loops:
        a = a + torch.eye(n)
    return sym_norm(a)


def layer_mean(adj, x, num_layers):
    out, cur = x, x
    for _ in range(num_layers):
        cur = adj @ cur
        out = out + cur
    return out / (num_layers + 1)


def bpr(pos, neg):
    return -torch.log(torch.sigmoid(pos - neg)).mean()


def dense_item_graph(data, k, weights=WEIGHTS):
    """sum_m w_m D^-1/2 W_m D^-1/2, W_m the binary cosine top-k (self in)."""
    out = torch.zeros(NUM_ITEMS, NUM_ITEMS)
    for m, w in weights.items():
        x = data['item'][f'x_{m}'].double()
        x = x / x.norm(dim=1, keepdim=True)
        sim = x @ x.t()
        sim.fill_diagonal_(float('inf'))
        val = sim.sort(dim=1, descending=True).values
        assert bool((val[:, k - 1] - val[:, k] > 1e-4).all())  # no near-ties
        top = sim.topk(k, dim=1).indices
        a = torch.zeros(NUM_ITEMS, NUM_ITEMS).scatter_(1, top, 1.0)
        out = out + w * sym_norm(a)
    return out


def pruned_dense(model):
    """The training graph rebuilt by hand from the pairs the pruning kept."""
    block = model.train_adj.to_dense()[:NUM_USERS, NUM_USERS:]
    kept = [tuple(p) for p in block.nonzero().tolist()]
    assert set(kept) <= set(TRAIN)
    assert len(kept) == int(len(TRAIN) * (1 - model.dropout))
    return dense_bipartite(kept)


@pytest.mark.parametrize('num_layers', [1, 2, 3])
def test_lightgcn_forward_is_the_dense_layer_mean(data, num_layers):
    """forward() = mean over l = 0..L of (D^-1/2 A D^-1/2)^l E."""
    model = LightGCN(data, embedding_dim=8, num_layers=num_layers).eval()
    e = model.embedding.weight.detach()
    out = layer_mean(dense_bipartite(TRAIN), e, num_layers)
    with torch.no_grad():
        user, item = model.encode()
    assert_close(user, out[:NUM_USERS])
    assert_close(item, out[NUM_USERS:])


def test_lightgcn_loss_by_value(data):
    """BPR on the propagated embeddings and reg_weight times the per-example
    L2 (sum of squares / (2 B)) of the batch's layer-0 embeddings."""
    model = LightGCN(data, embedding_dim=8, num_layers=2, reg_weight=0.5)
    model.train()
    e = model.embedding.weight.detach()
    out = layer_mean(dense_bipartite(TRAIN), e, 2)
    users, items = out[:NUM_USERS], out[NUM_USERS:]
    u = users[BATCH.user]
    exp_bpr = bpr((u * items[BATCH.pos]).sum(-1),
                  (u * items[BATCH.neg]).sum(-1))
    ego = torch.cat([e[BATCH.user], e[NUM_USERS + BATCH.pos],
                     e[NUM_USERS + BATCH.neg]])
    exp_reg = 0.5 * ego.pow(2).sum() / (2 * len(BATCH.user))
    terms = model(BATCH)
    assert set(terms) == {'bpr', 'reg'}
    assert_close(terms['bpr'], exp_bpr)
    assert_close(terms['reg'], exp_reg)


@pytest.mark.parametrize('k', [2, 3])
def test_freedom_item_graph_is_the_dense_knn_mix(data, k):
    """The item-item graph = the weighted sum of per-modality binary cosine
    top-k graphs (item itself included), D^-1/2 W D^-1/2 (entries 1/k)."""
    model = FREEDOM(data, embedding_dim=8, knn_k=k, modality_weights=WEIGHTS)
    expected = dense_item_graph(data, k)
    assert_close(model.item_graph.to_dense(), expected)
    assert_close(model.item_graph_t.to_dense(), expected.t())


@pytest.mark.parametrize('num_mm_layers', [1, 2])
def test_freedom_eval_forward_is_the_dense_formula(data, num_mm_layers):
    """Users / items = LightGCN mean on the full training graph; items also
    get + S^{L_m} E_i."""
    model = FREEDOM(data, embedding_dim=8, knn_k=2, modality_weights=WEIGHTS,
                    num_mm_layers=num_mm_layers, num_ui_layers=2).eval()
    e_u = model.user_embedding.weight.detach()
    e_i = model.item_embedding.weight.detach()
    h = torch.linalg.matrix_power(dense_item_graph(data, 2),
                                  num_mm_layers) @ e_i
    out = layer_mean(dense_bipartite(TRAIN), torch.cat([e_u, e_i]), 2)
    with torch.no_grad():
        user, item = model.encode()
    assert_close(user, out[:NUM_USERS])
    assert_close(item, out[NUM_USERS:] + h)


def test_freedom_loss_by_value(data):
    """Training uses the pruned graph; bpr_<m> = reg_weight * BPR of the
    users against the bias-free projected features."""
    torch.manual_seed(0)
    model = FREEDOM(data, embedding_dim=8, knn_k=2, modality_weights=WEIGHTS,
                    num_ui_layers=2, dropout=0.5, reg_weight=0.3)
    model.train()
    model.on_epoch_start(1)
    adj = pruned_dense(model)
    assert_close(model.train_adj.to_dense(), adj)
    e_u = model.user_embedding.weight.detach()
    e_i = model.item_embedding.weight.detach()
    out = layer_mean(adj, torch.cat([e_u, e_i]), 2)
    items = out[NUM_USERS:] + dense_item_graph(data, 2) @ e_i
    u = out[:NUM_USERS][BATCH.user]
    expected = {'bpr': bpr((u * items[BATCH.pos]).sum(-1),
                           (u * items[BATCH.neg]).sum(-1))}
    for m in WEIGHTS:
        weight = model.features.projections[m].weight.detach()
        proj = data['item'][f'x_{m}'] @ weight.t()
        expected[f'bpr_{m}'] = 0.3 * bpr((u * proj[BATCH.pos]).sum(-1),
                                         (u * proj[BATCH.neg]).sum(-1))
    terms = model(BATCH)
    assert set(terms) == set(expected)
    for name, value in expected.items():
        assert_close(terms[name], value, msg=name)


def fmcns(data, **kwargs):
    return FMCNS(data, embedding_dim=8, knn_k=2, modality_weights=WEIGHTS,
                 num_ui_layers=3, flow_mix=0.3, **kwargs)


def test_fmcns_eval_forward_mixes_the_generated_embeddings(data):
    """Spec 2.5 at evaluation: h = S E_i, every item's input is
    w * generated + (1 - w) * h, LightGCN mean over 3 layers on the full
    graph, items + h."""
    model = fmcns(data).eval()
    model.on_epoch_end(1)  # generates; then fix the generated embeddings
    gen = torch.Generator().manual_seed(3)
    generated = torch.randn(NUM_ITEMS, 8, generator=gen)
    with torch.no_grad():
        model.generated.copy_(generated)
    e_u = model.user_embedding.weight.detach()
    h = dense_item_graph(data, 2) @ model.item_embedding.weight.detach()
    mixed = 0.3 * generated + 0.7 * h
    out = layer_mean(dense_bipartite(TRAIN), torch.cat([e_u, mixed]), 3)
    with torch.no_grad():
        user, item = model.encode()
    assert_close(model.generated, generated)  # forward did not regenerate
    assert_close(user, out[:NUM_USERS])
    assert_close(item, out[NUM_USERS:] + h)


def test_fmcns_loss_terms_by_value(data, monkeypatch):
    """bpr = (1 - lambda) BPR(uniform), bpr_causal = lambda BPR(causal)
    once generated embeddings exist (plain BPR before), flow = gamma * MSE;
    the batch items' input mixes the flow's x_hat (last occurrence wins);
    the causal ranking sees the debiased anchors and the pool's embeddings,
    and a row without a valid candidate takes a uniform true negative."""
    torch.manual_seed(0)
    model = fmcns(data, dropout=0.5, causal_weight=0.8, flow_weight=0.7,
                  num_candidates=NUM_ITEMS)  # every item in the pool
    model.train()
    model.on_epoch_start(1)
    adj = pruned_dense(model)

    record = {}
    flow_loss = model.flow.loss

    def recording_loss(*args, **kwargs):
        record['target'] = args[0].detach().clone()
        record['out'] = flow_loss(*args, **kwargs)
        return record['out']

    causal = torch.tensor([3, 4, 4, 1])  # no training positive of its user

    def fake_rank(users, anchor, pool, pool_items, pool_emb, generator=None):
        record['rank'] = (users, anchor, pool_items, pool_emb)
        slot = (pool_items.view(1, -1) == causal.view(-1, 1)).long().argmax(1)
        # Rows 2 and 3: no valid candidate, a uniform true negative each.
        return pool[slot], torch.tensor([False, False, True, True])

    def fake_uniform(users, generator=None):
        record['fallback'] = users
        return causal[2:]

    sampler = model.causal_sampler
    monkeypatch.setattr(model.flow, 'loss', recording_loss)
    monkeypatch.setattr(sampler, 'rank_pool', fake_rank)
    monkeypatch.setattr(sampler.pairs, 'uniform_negatives', fake_uniform)
    freq = torch.bincount(torch.tensor([i for _, i in TRAIN]),
                          minlength=NUM_ITEMS).float() / NUM_USERS
    m = torch.sigmoid(-3.0 * (freq - freq.mean()) / (freq.std() + 1e-8))
    m = m[BATCH.pos].view(-1, 1)

    e_u = model.user_embedding.weight.detach()
    e_i = model.item_embedding.weight.detach()
    h = dense_item_graph(data, 2) @ e_i
    items = torch.cat([BATCH.pos, BATCH.neg])
    for has_generated in (False, True):
        if has_generated:  # after an epoch: generated embeddings exist
            model.on_epoch_end(1)
            with torch.no_grad():
                model.generated.normal_()
        terms = model(BATCH)
        mse, x_hat = record['out']
        x_hat = x_hat.detach()
        assert_close(record['target'], e_i[items])
        assert_close(mse.detach(), F.mse_loss(x_hat, e_i[items]))
        h_flow = h.clone()
        for row, item in enumerate(items.tolist()):  # the last write wins
            h_flow[item] = 0.3 * x_hat[row] + 0.7 * h[item]
        out = layer_mean(adj, torch.cat([e_u, h_flow]), 3)
        item_emb = out[NUM_USERS:] + h
        u = out[:NUM_USERS][BATCH.user]
        pos = (u * item_emb[BATCH.pos]).sum(-1)
        uniform = bpr(pos, (u * item_emb[BATCH.neg]).sum(-1))
        assert_close(terms['flow'], 0.7 * mse.detach())
        if not has_generated:
            assert set(terms) == {'bpr', 'flow'}
            assert_close(terms['bpr'], uniform)
            continue
        assert set(terms) == {'bpr', 'bpr_causal', 'flow'}
        users, anchor, pool_items, pool_emb = record['rank']
        assert torch.equal(users, BATCH.user)
        assert sorted(pool_items.tolist()) == list(range(NUM_ITEMS))
        assert_close(pool_emb, item_emb[pool_items])
        assert_close(anchor, m * model.generated[BATCH.pos] +
                     (1 - m) * item_emb[BATCH.pos])
        assert torch.equal(record['fallback'], BATCH.user[2:])
        hard = bpr(pos, (u * item_emb[causal]).sum(-1))
        assert not torch.allclose(hard, uniform)
        assert_close(terms['bpr'], 0.2 * uniform)
        assert_close(terms['bpr_causal'], 0.8 * hard)


@pytest.mark.parametrize('rebuild_k', [1, 2])
def test_mdmns_generated_graph_keeps_the_top_denoised_items(data, rebuild_k):
    """generated_<m> holds each user's rebuild_k highest-scored items of the
    deterministic reverse chain from the clean training row; G_m is the
    self-looped GCN-normalised graph of those pairs."""
    torch.manual_seed(0)
    model = MDMNS(data, embedding_dim=8, denoiser_hidden=16,
                  rebuild_k=rebuild_k, keep_rate=1.0)
    model.rebuild_graphs()
    x0 = torch.zeros(NUM_USERS, NUM_ITEMS)
    for u, i in TRAIN:
        x0[u, i] = 1.0
    for m in model.modalities:
        den = model.diffusion.denoisers[m].eval()
        with torch.no_grad():
            scores = model.diffusion.process.p_sample(den, x0)
        kept = getattr(model.core, f'generated_{m}')
        assert kept.shape == (NUM_USERS, rebuild_k)
        for u in range(NUM_USERS):
            order = scores[u].argsort(descending=True).tolist()
            top = sorted(order[:rebuild_k])
            assert sorted(kept[u].tolist()) == top, (m, u)
            assert float(scores[u, order[rebuild_k - 1]]
                         - scores[u, order[rebuild_k]]) > 1e-6
        pairs = [(u, i) for u in range(NUM_USERS) for i in kept[u].tolist()]
        adj, _ = model.generated_graph(m)
        assert_close(adj.to_dense(), dense_bipartite(pairs, self_loops=True))


def hand_alphas_cumprod(num_steps, noise_scale, noise_min, noise_max,
                        beta_fixed):
    """Spec 3.3's schedule in float64: variance, alpha_bar target, betas,
    beta_0 overwritten, then alpha_bar = cumprod(1 - beta)."""
    var = [noise_scale * (noise_min + t * (noise_max - noise_min)
                          / max(num_steps - 1, 1)) for t in range(num_steps)]
    target = [1.0 - v for v in var]
    betas = [1.0 - target[0]] + [min(1.0 - target[t] / target[t - 1], 0.999)
                                 for t in range(1, num_steps)]
    if beta_fixed is not None:
        betas[0] = beta_fixed
    return torch.tensor(betas, dtype=torch.float64), torch.cumprod(
        1.0 - torch.tensor(betas, dtype=torch.float64), dim=0)


@pytest.mark.parametrize('args', [(5, 0.1, 1e-4, 0.02, 1e-4),
                                  (8, 0.5, 1e-3, 0.1, None)])
def test_q_sample_paths_agree_with_the_closed_form(args):
    """Drawn noise and the same noise given explicitly give the same x_t,
    sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
    diff = GaussianDiffusion(*args)
    betas, alpha_bar = hand_alphas_cumprod(*args)
    assert_close(diff.betas, betas.float())
    steps = args[0]
    t = torch.tensor([0, steps - 1, steps // 2, 1, steps - 1, 0])
    x0 = torch.rand(6, 7, generator=torch.Generator().manual_seed(5)) + 0.5
    g = torch.Generator().manual_seed(11)
    drawn = diff.q_sample(x0, t, noise=None, generator=g)
    g.manual_seed(11)
    eps = torch.randn(x0.shape, generator=g, device=x0.device, dtype=x0.dtype)
    given = diff.q_sample(x0, t, noise=eps)
    assert_close(drawn, given, rtol=1e-6, atol=1e-7)
    ab = alpha_bar[t][:, None]
    closed = (ab.sqrt() * x0.double() + (1 - ab).sqrt() * eps.double()).float()
    for out in (drawn, given):
        assert_close(out, closed, rtol=1e-6, atol=1e-6)
    assert math.isclose(float(alpha_bar[-1]), float(diff.alphas_cumprod[-1]),
                        rel_tol=1e-6)
