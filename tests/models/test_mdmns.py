import pytest
import torch
from trainer_factory import make_trainer

from pyg_mmrec.data import add_synthetic_features, make_synthetic
from pyg_mmrec.graphs import csr_dense_rows, csr_to_edge_index
from pyg_mmrec.loader import BPRBatch
from pyg_mmrec.models import MDMNS, Pop
from pyg_mmrec.train import Trainer
from pyg_mmrec.train.checkpoint import seed_everything
from pyg_mmrec.train.optim import build_optimizer

SMALL = dict(embedding_dim=16, denoiser_hidden=32)


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=150, num_items=90, seed=4)


def batch_of(data, size=64):
    edge_index = data['user', 'interacts', 'item'].edge_index[:, :size]
    gen = torch.Generator().manual_seed(0)
    neg = torch.randint(data['item'].num_nodes, (edge_index.size(1), ),
                        generator=gen)
    return BPRBatch(edge_index[0], edge_index[1], neg)


@pytest.mark.parametrize('k', [1, 3])
def test_generated_graph_has_k_items_per_user_plus_self_loops(data, k):
    model = MDMNS(data, rebuild_k=k, keep_rate=1.0, **SMALL)
    model.rebuild_graphs()
    num_users, num_items = model.num_users, model.num_items
    for m in model.modalities:
        adj, adj_t = model.generated_graph(m)
        assert adj.shape == (num_users + num_items, ) * 2
        (row, col), value = csr_to_edge_index(adj)
        loops = row == col
        assert int(loops.sum()) == num_users + num_items
        user_rows = row[~loops] < num_users
        # every user row: exactly k item entries besides its self-loop
        counts = torch.bincount(row[~loops][user_rows], minlength=num_users)
        assert torch.all(counts == k)
        assert torch.all(col[~loops][user_rows] >= num_users)
        # GCN normalisation with self-loops: a_uv = 1 / sqrt(d_u d_v)
        deg = torch.bincount(row, minlength=num_users + num_items).float()
        assert torch.allclose(value, (deg[row] * deg[col]).rsqrt())
        dense = adj.to_dense()
        assert torch.allclose(dense, dense.t())
        assert torch.allclose(adj_t.to_dense(), dense.t())
        # the items are each user's top-k of the denoised row
        items = getattr(model.core, f'generated_{m}')
        assert items.shape == (num_users, k)


def test_generated_graph_drops_entries_reproducibly(data):
    model = MDMNS(data, keep_rate=0.5, **SMALL)
    model.rebuild_graphs()
    adj, _ = model.generated_graph('image')
    full = MDMNS(data, keep_rate=1.0, **SMALL)
    full.load_state_dict(model.state_dict())
    kept = adj._nnz() / full.generated_graph('image')[0]._nnz()
    assert 0.4 < kept < 0.6
    # kept entries are rescaled by 1 / keep_rate
    assert torch.allclose(adj.values().max(),
                          2 * full.generated_graph('image')[0].values().max())
    # the CSR is derived from checkpointed buffers: a copy rebuilds it exactly
    copy = MDMNS(data, keep_rate=0.5, **SMALL)
    copy.load_state_dict(model.state_dict())
    assert torch.equal(copy.generated_graph('image')[0].to_dense(),
                       adj.to_dense())


@pytest.mark.parametrize('faithful', [False, True])
def test_diffusion_stage_trains_only_the_diffusion_part(data, faithful):
    seed_everything(0)
    model = MDMNS(data, faithful=faithful, **SMALL)
    trainer = Trainer(model, data, progress=False)
    (stage, ) = trainer.stages
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = [trainer.run_stage(1, stage, epoch) for epoch in range(1, 31)]
    assert set(losses[0]) == set(model.modalities)
    for m in model.modalities:
        if faithful:  # a random, unlearnable term dominates the original's
            assert all(torch.isfinite(torch.tensor(r[m])) for r in losses)
        else:
            assert sum(r[m] for r in losses[-5:]) < \
                0.7 * sum(r[m] for r in losses[:5])
    own = {id(p) for p in stage.parameters()}
    part = model.diffusion
    assert own == {id(p) for p in part.denoisers.parameters()} | (
        set() if faithful else {id(p) for p in part.guidance.parameters()})
    # the recommender's optimiser leaves the stage's parameters alone
    assert not own & {id(p) for group in trainer.optimizer.param_groups
                      for p in group['params']}
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) != (id(p) in own), n
    assert (model.diffusion.guidance is None) == faithful
    assert all(p.grad is None for p in model.parameters())


def reference_optimizers(model, lr):
    r"""MDMNS's denoiser optimisers as they were before the trainer ran the
    denoisers as a stage: one Adam per denoiser and one for the guidance
    network."""
    parts = dict(model.diffusion.denoisers.items())
    if model.diffusion.guidance is not None:
        parts['guidance'] = model.diffusion.guidance
    return {name: build_optimizer('adam', part.parameters(), lr=lr)
            for name, part in parts.items()}


def reference_denoiser_epoch(model, blocks, opts):
    r"""MDMNS's denoiser epoch as it was written before the trainer ran it
    as a stage: each denoiser stepped right after its own backward pass,
    the guidance network once per block."""
    with torch.no_grad():
        feats = model.features()
        guides = model.diffusion.guides(feats)
        item_emb = model.item_embedding.weight.detach()
    losses = []
    for users in blocks:
        x0 = csr_dense_rows(model.core.interactions, users)
        row = {}
        for m in model.modalities:
            loss = model.diffusion.loss(m, x0, guides[m], feats[m], item_emb)
            loss.backward()
            opts[m].step()
            opts[m].zero_grad(set_to_none=True)
            row[m] = float(loss.detach())
        if 'guidance' in opts:
            opts['guidance'].step()
            opts['guidance'].zero_grad(set_to_none=True)
        losses.append(row)
    return losses


@pytest.mark.parametrize('faithful', [False, True])
def test_stage_trained_denoisers_equal_the_per_denoiser_loop(data, faithful):
    """The diffusion stage (one optimiser, one backward of the summed terms
    per block) gives the losses and weights of the original loop, bit for
    bit, on a fixed seed."""
    kwargs = dict(SMALL, faithful=faithful, denoiser_batch_size=40)
    seed_everything(0)
    staged = MDMNS(data, **kwargs)
    trainer = Trainer(staged, data, progress=False)
    (stage, ) = trainer.stages
    seed_everything(0)
    reference = MDMNS(data, **kwargs)
    staged.train(), reference.train()
    opts = reference_optimizers(reference, lr=1e-3)
    blocks = {}
    for epoch in (1, 2):
        order = list(stage.source.batches(epoch,
                                          trainer.generator(epoch, 1)))
        seed_everything(epoch)
        expected = reference_denoiser_epoch(reference, order, opts)
        seed_everything(epoch)
        got = []
        original = stage.loss

        def recording(users):
            terms = original(users)
            got.append({m: float(t.detach()) for m, t in terms.items()})
            return terms

        stage.loss = recording
        trainer.run_stage(1, stage, epoch)
        stage.loss = original
        assert got == expected
        blocks[epoch] = len(order)
    assert blocks == {1: 4, 2: 4}  # 150 users in blocks of 40
    for (name, a), b in zip(staged.named_parameters(),
                            reference.parameters()):
        assert torch.equal(a, b), name


def test_loss_terms_per_cl_method(data):
    for cl_method, anchors in ((0, 'batch'), (1, 'batch'), (1, 'all')):
        model = MDMNS(data, cl_method=cl_method, cl_anchors=anchors, **SMALL)
        model.train()
        terms = model(batch_of(data))
        assert set(terms) == {'bpr', 'reg', 'cl'}
        assert all(torch.isfinite(t) for t in terms.values())
    # 'all' anchors and 'batch' anchors are different estimates:
    seed_everything(1)
    a = MDMNS(data, cl_method=1, cl_anchors='all', **SMALL)
    seed_everything(1)
    b = MDMNS(data, cl_method=1, cl_anchors='batch', **SMALL)
    b.load_state_dict(a.state_dict())
    assert not torch.allclose(a(batch_of(data))['cl'],
                              b(batch_of(data))['cl'])


def test_scores_sum_the_branches(data):
    model = MDMNS(data, **SMALL).eval()
    users = torch.tensor([0, 5, 9])
    out = model.branches()
    expected = sum(u[users] @ i.t() for u, i in out.values())
    assert torch.allclose(model.score(users), expected, atol=1e-5)
    assert set(out) == {'fused', *model.modalities}


def test_three_modalities_and_bad_arguments(data):
    tri = add_synthetic_features(data, {'audio': 12}, seed=0)
    model = MDMNS(tri, cl_method=1, **SMALL)
    assert model.modalities == ['image', 'text', 'audio']
    guides = model.diffusion.guides(model.features())
    feats = model.features()
    assert torch.allclose(guides['audio'],
                          (feats['image'] + feats['text']) / 2)
    assert model.noise_levels == [0, 0, 1, 2]
    model.train()
    assert torch.isfinite(model(batch_of(tri))['cl'])
    for kwargs, match in (({'cl_method': 2}, 'cl_method'),
                          ({'trans': 3}, 'trans'),
                          ({'keep_rate': 0.0}, 'keep_rate'),
                          ({'rebuild_k': 0}, 'rebuild_k'),
                          ({'cl_anchors': 'some'}, 'cl_anchors')):
        with pytest.raises(ValueError, match=match):
            MDMNS(data, **kwargs)


@pytest.mark.parametrize('cl_method', [0, 1])
def test_mdmns_learns_beyond_popularity(cl_method):
    data = make_synthetic(num_users=600, num_items=400, seed=0)
    recall = {}
    for name in ('pop', 'mdmns'):
        seed_everything(0)
        model = (Pop(data) if name == 'pop' else
                 MDMNS(data, embedding_dim=32, denoiser_hidden=64,
                       cl_method=cl_method))
        res = make_trainer(model, data, lr=5e-3, batch_size=512, epochs=10,
                           patience=10).fit()
        recall[name] = res['test']['recall@20']
    assert recall['mdmns'] > 1.5 * recall['pop'], recall


def test_branches_follow_the_dense_formulas(data):
    # The spec's forward pass, literally, with dense matrices.
    model = MDMNS(data, num_layers=2, keep_rate=0.5, **SMALL)
    model.rebuild_graphs()
    U = model.num_users
    A = model.core.adj.to_dense()
    e_u, e_i = model.user_embedding.weight, model.item_embedding.weight
    e_id = torch.cat([e_u, e_i])
    norm = torch.nn.functional.normalize

    def branch(x_item, gen):
        h = A @ torch.cat([e_u, x_item])
        return h + A @ torch.cat([h[:U], e_i]) + 0.2 * gen @ e_id

    def encode(h):
        z = h + A @ h + A @ (A @ h) + 0.5 * norm(h)
        return z[:U], z[U:]

    feats = model.features()
    hidden = {m: branch(norm(feats[m]), model.generated_graph(m)[0].to_dense())
              for m in model.modalities}
    w = torch.softmax(model.modal_weight, 0)
    mixed = w[0] * hidden['image'] + w[1] * hidden['text']
    expected = {'fused': encode(branch(norm(mixed[U:]), A))}
    expected.update({m: encode(h) for m, h in hidden.items()})
    out = model.branches()
    for name, (u, i) in expected.items():
        assert torch.allclose(out[name][0], u, atol=1e-5), name
        assert torch.allclose(out[name][1], i, atol=1e-5), name


def test_offloaded_denoisers_train_identically(data, tmp_path):
    results, states = {}, {}
    for offload_dir in (None, str(tmp_path / 'offload')):
        seed_everything(0)
        model = MDMNS(data, cl_method=1, offload_dir=offload_dir, **SMALL)
        trainer = make_trainer(model, data, batch_size=128, epochs=2)
        results[offload_dir] = [trainer.train_epoch(e) for e in (1, 2)]
        if offload_dir is not None:  # idle between epochs: in the file
            assert trainer.offloads['diffusion'].is_offloaded
            assert all(p.numel() == 0
                       for p in model.diffusion.denoisers.parameters())
        with trainer.resident():  # complete either way
            states[offload_dir] = {k: v.clone() for k, v in
                                   model.state_dict().items()}
        if offload_dir is not None:
            assert trainer.offloads['diffusion'].is_offloaded
    assert results[None] == results[str(tmp_path / 'offload')]
    a, b = states.values()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_offloaded_stage_resumes_exactly(data, tmp_path):
    """A run with the diffusion stage offloaded, interrupted and resumed,
    ends where an uninterrupted one does (stage optimiser included)."""
    def interrupt(trainer, record):
        if record['epoch'] == 2:
            raise KeyboardInterrupt

    def strip_times(history):
        return [{k: v for k, v in r.items() if not k.endswith('_time')}
                for r in history]

    def run(out, callbacks=(), resume=False):
        seed_everything(0)
        model = MDMNS(data, offload_dir=str(tmp_path / 'offload'), **SMALL)
        return make_trainer(model, data, batch_size=128, epochs=3,
                            patience=3, checkpoint_dir=str(out),
                            resume=resume,
                            callbacks=list(callbacks)).fit(), model

    full, full_model = run(tmp_path / 'a')
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / 'b', callbacks=[interrupt])
    resumed, resumed_model = run(tmp_path / 'b', resume=True)
    assert strip_times(resumed['history']) == strip_times(full['history'])
    # fit() returns with the stage back in memory
    for (name, a), b in zip(full_model.named_parameters(),
                            resumed_model.parameters()):
        assert torch.equal(a, b), name


def test_faithful_multi_level_loss_uses_all_anchors_and_nominal_bpr_divisor(
        data):
    assert MDMNS(data, **SMALL).cl_anchors == 'batch'
    assert MDMNS(data, faithful=True, **SMALL).cl_anchors == 'all'
    assert MDMNS(data, faithful=True, cl_anchors='batch',
                 **SMALL).cl_anchors == 'batch'
    model = MDMNS(data, faithful=True, cl_method=1, **SMALL)
    model.train()
    model.rebuild_graphs()
    full, last = batch_of(data, size=64), batch_of(data, size=16)
    with torch.no_grad():
        bpr_full = model(full)['bpr']
        bpr_last = model(last)['bpr']  # the epoch's smaller last batch
        model.faithful = False  # the mean over the batch, for reference
        mean_full = model(full)['bpr']
        mean_last = model(last)['bpr']
    torch.testing.assert_close(bpr_full, mean_full)
    torch.testing.assert_close(bpr_last, mean_last * 16 / 64)
