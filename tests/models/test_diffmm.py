"""DiffMM against the spec's dense formulas (forward, both contrastive
pairings, regulariser), its unguided denoiser stage and its faithful BPR."""
import logging

import pytest
import torch
import torch.nn.functional as F

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.loader import BPRBatch
from pyg_mmrec.models import DiffMM
from pyg_mmrec.train import Trainer
from pyg_mmrec.train.checkpoint import seed_everything

SMALL = dict(embedding_dim=8, denoiser_hidden=16)


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=40, num_items=30, seed=4)


def batch_of(data, size=24):
    edge_index = data['user', 'interacts', 'item'].edge_index[:, :size]
    neg = torch.randint(data['item'].num_nodes, (edge_index.size(1), ),
                        generator=torch.Generator().manual_seed(0))
    return BPRBatch(edge_index[0], edge_index[1], neg)


def dense_nce(x, y, index, tau):
    r""":math:`-\frac{1}{|B|}\sum_{n \in B} \log \mathrm{softmax}_j
    (\cos(x_n, y_j) / \tau)_n` over all rows :math:`j`."""
    logits = F.normalize(x)[index] @ F.normalize(y).t() / tau
    return F.cross_entropy(logits, index)


def dense_model(model):
    r"""Z and the views V_m of the spec (7.2), with dense matrices."""
    U = model.num_users
    A = model.core.adj.to_dense()
    e_u, e_i = model.user_embedding.weight, model.item_embedding.weight
    e_id = torch.cat([e_u, e_i])
    feats = model.features()
    w = torch.softmax(model.modal_weight, 0)
    mixed, views = 0, {}
    for k, m in enumerate(model.modalities):
        gen = model.core.graph(m)[0].to_dense()
        x = torch.cat([e_u, F.normalize(feats[m])])
        h = A @ x
        h = h + A @ torch.cat([h[:U], e_i]) + 0.2 * gen @ e_id
        mixed = mixed + w[k] * h
        v = gen @ x
        views[m] = v + A @ v  # one layer, sum pooling
    z = mixed + A @ mixed + 0.5 * F.normalize(mixed)
    return (z[:U], z[U:]), {m: (v[:U], v[U:]) for m, v in views.items()}


@pytest.mark.parametrize('cl_method', [0, 1])
def test_forward_and_loss_follow_the_dense_formulas(data, cl_method):
    seed_everything(0)
    model = DiffMM(data, cl_method=cl_method, reg_weight=1e-2,
                   ssl_weight=0.3, temperature=0.4, **SMALL)
    model.rebuild_graphs()
    model.eval()  # no denoiser dropout; the recommender has none
    (z_u, z_i), views = dense_model(model)
    enc_u, enc_i = model.encode()
    torch.testing.assert_close(enc_u, z_u, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(enc_i, z_i, atol=1e-5, rtol=1e-4)

    batch = batch_of(data)
    terms = model(batch)
    u, p, n = batch.user, batch.pos, batch.neg
    s = lambda i: (z_u[u] * z_i[i]).sum(-1)  # noqa: E731
    torch.testing.assert_close(terms['bpr'],
                               F.softplus(s(n) - s(p)).mean())
    reg = (model.user_embedding.weight.pow(2).sum()
           + model.item_embedding.weight.pow(2).sum())
    torch.testing.assert_close(terms['reg'], 1e-2 * reg)
    (vi_u, vi_i), (vt_u, vt_i) = views['image'], views['text']
    if cl_method == 0:  # image view against text view
        cl = dense_nce(vi_u, vt_u, u, 0.4) + dense_nce(vi_i, vt_i, p, 0.4)
    else:  # the fused Z against each modality view
        cl = sum(dense_nce(z_u, v_u, u, 0.4) + dense_nce(z_i, v_i, p, 0.4)
                 for v_u, v_i in views.values())
    torch.testing.assert_close(terms['cl'], 0.3 * cl, atol=1e-5, rtol=1e-4)


def test_the_denoisers_read_the_noisy_rows_without_guidance(data):
    seed_everything(0)
    model = DiffMM(data, **SMALL)
    assert model.diffusion.guidance is None
    assert model.diffusion.guidance_mode == 'none'
    (stage, ) = Trainer(model, data, progress=False).stages
    assert {id(p) for p in stage.parameters()} == {
        id(p) for p in model.diffusion.denoisers.parameters()}
    results = Trainer(model, data, progress=False, epochs=2).fit()
    losses = results['history'][-1]['losses']
    # the unguided denoiser loss is logged per modality (SNR-weighted: in
    # the tens or more even on this small graph)
    assert losses['diffusion/image'] > 1.0 and losses['diffusion/text'] > 1.0


def test_faithful_divides_the_last_batch_by_the_nominal_size(data):
    model = DiffMM(data, faithful=True, **SMALL)
    model.rebuild_graphs()
    model.eval()
    full, last = batch_of(data, 24), batch_of(data, 6)
    with torch.no_grad():
        bpr_full, bpr_last = model(full)['bpr'], model(last)['bpr']
        model.faithful = False
        mean_full, mean_last = model(full)['bpr'], model(last)['bpr']
    torch.testing.assert_close(bpr_full, mean_full)
    torch.testing.assert_close(bpr_last, mean_last * 6 / 24)


def test_one_modality_has_no_pair_to_contrast(caplog):
    data = make_synthetic(num_users=30, num_items=20, seed=1,
                          modalities={'image': 6})
    with caplog.at_level(logging.WARNING):
        model = DiffMM(data, cl_method=0, **SMALL)
    assert 'cl_method=0' in caplog.text
    terms = model(batch_of(data, 8))
    assert float(terms['cl']) == 0.0
    assert DiffMM(data, cl_method=1, **SMALL)(batch_of(data, 8))['cl'] > 0
    with pytest.raises(ValueError, match='cl_method'):
        DiffMM(data, cl_method=2)
