import pytest
import torch
from trainer_factory import make_trainer

from pyg_mmrec.data import add_synthetic_features, make_synthetic
from pyg_mmrec.graphs import csr_dense_rows
from pyg_mmrec.loader import BPRBatch
from pyg_mmrec.models import GenRec, Pop
from pyg_mmrec.models.genrec import candidate_rows, top_generated
from pyg_mmrec.train import Trainer
from pyg_mmrec.train.checkpoint import seed_everything

SMALL = dict(embedding_dim=16, denoiser_hidden=16, denoiser_layers=1,
             denoiser_heads=2, denoiser_ff=16)


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=150, num_items=90, seed=4)


def batch_of(data, size=64):
    edge_index = data['user', 'interacts', 'item'].edge_index[:, :size]
    neg = torch.randint(data['item'].num_nodes, (edge_index.size(1), ),
                        generator=torch.Generator().manual_seed(0))
    return BPRBatch(edge_index[0], edge_index[1], neg)


def fixed_sampler(num_items):
    # A deterministic stand-in for the reverse chain: p from a fixed
    # item-item map of the clean row, x from a fixed threshold.
    w = torch.rand(num_items, num_items,
                   generator=torch.Generator().manual_seed(7))

    def p_sample(denoiser, x0, steps):
        p = torch.sigmoid(x0 @ w - 2.0)
        return (p > 0.6).float(), p
    return p_sample


@pytest.mark.parametrize('faithful', [False, True])
def test_blockwise_generated_graph_equals_a_dense_reference(data, faithful):
    model = GenRec(data, gen_topk=4, rebuild_k=2, keep_rate=1.0,
                   faithful=faithful, **SMALL)
    model.process.p_sample = fixed_sampler(model.num_items)
    results = []
    for block in (7, model.num_users):
        model.core.denoiser_batch_size = block
        model.rebuild_graph()
        results.append(model.core.generated_items.clone())
    assert torch.equal(results[0], results[1])
    # the dense reference, user by user
    x0 = model.core.interactions.to_dense()
    x, p = model.process.p_sample(None, x0, 5)
    expected = torch.full((model.num_users, 2), -1)
    for u in range(model.num_users):
        gen = x0[u].clone()
        top = sorted(range(model.num_items), key=lambda i: -float(p[u, i]))
        for i in top[:4]:
            gen[i] = x[u, i]
        score = gen * p[u]
        best = sorted(range(model.num_items), key=lambda i: -float(score[i]))
        for j, i in enumerate(best[:2]):
            if faithful or score[i] > 0:
                expected[u, j] = i
    got = results[0]
    assert torch.equal(got[:, 0], expected[:, 0])
    assert torch.equal(got[:, 1] >= 0, expected[:, 1] >= 0)
    real = expected >= 0  # (zero-score picks of faithful: any order)
    if not faithful:
        assert torch.equal(got[real], expected[real])
    # G: those edges, self-looped and GCN-normalised
    adj, _ = model.generated_graph()
    dense = torch.zeros(model.num_users + model.num_items,
                        model.num_users + model.num_items)
    for u in range(model.num_users):
        for i in got[u].tolist():
            if i >= 0:
                dense[u, model.num_users + i] = 1
    dense = dense + dense.t() + torch.eye(dense.size(0))
    deg = dense.sum(1)
    dense = dense / (deg[:, None] * deg[None]).sqrt()
    torch.testing.assert_close(adj.to_dense(), dense)


def test_generation_uses_training_rows_only(data):
    model = GenRec(data, **SMALL)
    rows = csr_dense_rows(model.core.interactions,
                          torch.arange(model.num_users))
    train = data['user', 'interacts', 'item']
    mask = train.train_mask
    assert rows.sum() == mask.sum()
    held_out = train.edge_index[:, ~mask]
    assert rows[held_out[0], held_out[1]].sum() == 0


def test_candidate_and_top_selection():
    x0 = torch.tensor([[1., 0., 0., 1.], [0., 0., 0., 0.]])
    x = torch.tensor([[0., 1., 1., 1.], [0., 0., 0., 0.]])
    p = torch.tensor([[0.9, 0.8, 0.1, 0.2], [0.5, 0.4, 0.3, 0.2]])
    gen = candidate_rows(x0, x, p, 2)  # user 0: items 0, 1 from x
    assert gen.tolist() == [[0., 1., 0., 1.], [0., 0., 0., 0.]]
    assert top_generated(gen, p, 1).tolist() == [[1], [-1]]
    assert top_generated(gen, p, 1, keep_empty=True)[0].tolist() == [1]


@pytest.mark.parametrize('mix', [None, (1.2, -0.5)],
                         ids=['equal', 'unequal'])
def test_propagation_follows_the_dense_formulas(data, mix):
    # mix: the two graph-mixing parameters (None: the initial, equal ones,
    # under which swapping the original and generated weights is invisible)
    model = GenRec(data, keep_rate=1.0, **SMALL)
    model.rebuild_graph()
    model.eval()  # deterministic (no dropout, running BN statistics)
    U = model.num_users
    A = model.core.adj.to_dense()
    G = model.generated_graph()[0].to_dense()
    R = model.core.norm_interactions.to_dense()
    e = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    if mix is None:
        w = torch.softmax(model.mix_weight, 0)
    else:
        with torch.no_grad():
            model.mix_weight.copy_(torch.tensor(mix))
        # w_o, w_g: the original graph's weight, then the generated one's
        w = torch.softmax(torch.tensor(mix), 0)
        assert float(w[0]) > 0.8 and not torch.allclose(A, G)
    C = w[0] * (e + A @ e) / 2 + w[1] * (e + G @ e) / 2
    H = []
    for m in model.modalities:
        p = model.features.project(m)
        f = model.res_scale * p + model.projector[m](p)
        item = getattr(model, f'knn_{m}').to_dense() @ (
            model.item_embedding.weight * model.gates[m](f))
        H.append(torch.cat([R @ item, item]))
    a = torch.softmax(torch.stack([model.common(h) for h in H]), 0)
    common = sum(ai * h for ai, h in zip(a, H))
    S = (common + sum(model.gates[m](C) * (h - common)
                      for m, h in zip(model.modalities, H))) / 4
    with torch.no_grad():
        final, side, content = model.propagate()
    for got, want in ((final, C + S), (side, S), (content, C)):
        torch.testing.assert_close(got, want.detach(), atol=1e-5, rtol=1e-4)
    users = torch.tensor([0, 4])
    torch.testing.assert_close(model.score(users),
                               (final[users] @ final[U:].t()))


def test_faithful_side_rules_and_training_mode(data):
    tri = add_synthetic_features(data, {'audio': 12}, seed=0)
    fixed, faithful = GenRec(tri, **SMALL), GenRec(tri, faithful=True,
                                                   **SMALL)
    assert fixed.side_modalities == ['image', 'text', 'audio']
    assert faithful.side_modalities == ['audio'] and faithful.side_in_score
    baby = GenRec(data, faithful=True, **SMALL)  # no audio: scores use C
    assert baby.side_modalities == ['image', 'text']
    assert not baby.side_in_score
    with torch.no_grad():
        final, _, content = baby.propagate()
    assert torch.equal(final, content)
    faithful.eval()
    assert not faithful.training
    assert all(m.training for m in faithful.modules() if m is not faithful)
    fixed.eval()
    assert not any(m.training for m in fixed.modules())
    # the original's negative, growing denoiser loss
    assert faithful.process.faithful and not fixed.process.faithful


def test_denoiser_stage_trains_only_the_denoiser(data):
    seed_everything(0)
    model = GenRec(data, **SMALL)
    trainer = Trainer(model, data, progress=False)
    (stage, ) = trainer.stages
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = [trainer.run_stage(1, stage, e)['flip'] for e in range(1, 16)]
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3])
    own = {id(p) for p in model.denoiser.parameters()}
    assert own == {id(p) for p in stage.parameters()}
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) != (id(p) in own), n
    assert bool(model.core.has_generated)  # rebuilt after the stage


def test_ablation_without_generated_graph_and_bad_arguments(data):
    model = GenRec(data, use_generated_graph=False, **SMALL)
    assert model.stages() == () and model.denoiser is None
    assert model.mix_weight is None
    model.train()
    terms = model(batch_of(data))
    assert set(terms) == {'bpr', 'reg', 'cl'}
    assert GenRec(data, graph_mix='sum', **SMALL).mix_weight is None
    for kwargs, match in (({'graph_mix': 'max'}, 'graph_mix'),
                          ({'keep_rate': 0.0}, 'keep_rate'),
                          ({'rebuild_k': 6}, 'rebuild_k'),
                          ({'sampling_steps': 6}, 'sampling_steps'),
                          ({'feature_shift': {'audio': 0.2}}, 'audio')):
        with pytest.raises(ValueError, match=match):
            GenRec(data, **kwargs)


def test_interest_debias_builds_clusters_per_modality(data):
    model = GenRec(data, interest_debias=True,
                   num_clusters={'image': 3, 'text': 5}, **SMALL)
    assert int(model.clusters['image'].max()) == 2
    assert int(model.clusters['text'].max()) == 4
    faithful = GenRec(data, interest_debias=True, faithful=True,
                      num_clusters={'image': 3, 'text': 5}, **SMALL)
    assert torch.equal(faithful.clusters['text'], faithful.clusters['image'])
    model.rebuild_graph()
    items = model.core.generated_items
    assert bool(((items >= -1) & (items < model.num_items)).all())


def test_genrec_learns_beyond_popularity():
    data = make_synthetic(num_users=600, num_items=400, seed=0)
    recall = {}
    for name in ('pop', 'genrec'):
        seed_everything(0)
        model = (Pop(data) if name == 'pop' else
                 GenRec(data, embedding_dim=32, denoiser_hidden=32,
                        denoiser_layers=1, denoiser_ff=32,
                        denoiser_batch_size=300))
        res = make_trainer(model, data, lr=1e-2, batch_size=512, epochs=10,
                           patience=10).fit()
        recall[name] = res['test']['recall@20']
    assert recall['genrec'] > 1.2 * recall['pop'], recall
