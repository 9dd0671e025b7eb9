import pytest
import torch
from trainer_factory import make_trainer

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.loader import BPRBatch
from pyg_mmrec.models import FMCNS
from pyg_mmrec.models.fmcns import last_occurrence
from pyg_mmrec.train.checkpoint import seed_everything


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=150, num_items=90, seed=4)


def batch_of(data, size=64, seed=0):
    edge_index = data['user', 'interacts', 'item'].edge_index[:, :size]
    gen = torch.Generator().manual_seed(seed)
    neg = torch.randint(data['item'].num_nodes, (edge_index.size(1), ),
                        generator=gen)
    return BPRBatch(edge_index[0], edge_index[1], neg)


def test_last_occurrence():
    uniq, last = last_occurrence(torch.tensor([4, 2, 4, 7, 2, 4]))
    assert uniq.tolist() == [2, 4, 7]
    assert last.tolist() == [4, 5, 3]


@pytest.mark.parametrize('faithful', [False, True])
def test_flow_target_is_detached_unless_faithful(data, faithful):
    model = FMCNS(data, faithful=faithful)
    model.train()
    model.on_epoch_start(1)
    model(batch_of(data))['flow'].backward()
    grad = model.item_embedding.weight.grad
    moved = grad is not None and bool(grad.abs().sum() > 0)
    assert moved == faithful
    assert all(p.grad is not None for p in model.flow.parameters())


def test_causal_negatives_start_after_the_first_generation(data):
    model = FMCNS(data)
    model.train()
    model.on_epoch_start(1)
    assert set(model(batch_of(data))) == {'bpr', 'flow'}
    model.on_epoch_end(1)
    assert bool(model.has_generated)
    terms = model(batch_of(data))
    assert set(terms) == {'bpr', 'bpr_causal', 'flow'}
    assert all(torch.isfinite(t) for t in terms.values())
    # Without the causal share, plain BPR stays.
    model.causal_weight = 0.0
    assert set(model(batch_of(data))) == {'bpr', 'flow'}


@pytest.mark.parametrize('faithful', [False, True])
def test_generation_and_evaluation_use_the_generated_embeddings(
        data, faithful):
    model = FMCNS(data, faithful=faithful).eval()
    assert not bool(model.has_generated)
    user, item = model.encode()  # generates on first use
    assert bool(model.has_generated)
    assert torch.isfinite(model.generated).all()
    before = model.generated.clone()
    model.generate()
    assert not torch.equal(before, model.generated)  # fresh prior draws
    model.flow_mix = 0.0  # the generated share no longer matters
    model.train().eval()
    u0, _ = model.encode()
    model.generated.normal_()
    model.train().eval()
    u1, _ = model.encode()
    assert torch.allclose(u0, u1)


@pytest.mark.parametrize('flow', [True, False])
def test_training_on_the_receptive_field_equals_the_full_graph(data, flow,
                                                               monkeypatch):
    """The full-graph step propagates only the rows the batch reads (users,
    positives, negatives, causal pool): the same losses and gradients as
    reading them off the whole propagation, with the same random draws."""
    weights = {} if flow else dict(flow_weight=0.0, flow_mix=0.0)
    model = FMCNS(data, num_candidates=30, sample_k=0.2, **weights)
    model.train()
    model.on_epoch_start(1)
    model.on_epoch_end(1)  # causal negatives from here on
    model.on_epoch_start(2)
    batch = batch_of(data)

    def step():
        model.zero_grad()
        terms = model(batch)
        sum(terms.values()).backward()
        return ({k: v.detach() for k, v in terms.items()},
                {n: p.grad.clone() for n, p in model.named_parameters()
                 if p.grad is not None})

    def full_rows(item_input, adj, users, items):
        user, item = model.propagate(item_input, adj)
        return user[users], item[items]

    state = torch.get_rng_state()
    terms, grads = step()
    assert set(terms) >= {'bpr', 'bpr_causal'}
    monkeypatch.setattr(model, 'propagate_rows', full_rows)
    torch.set_rng_state(state)
    ref_terms, ref_grads = step()
    assert terms.keys() == ref_terms.keys()
    assert grads.keys() == ref_grads.keys()
    for key in terms:
        assert torch.allclose(terms[key], ref_terms[key], atol=1e-7), key
    for key in grads:
        assert torch.allclose(grads[key], ref_grads[key], atol=1e-7), key


def test_fmcns_learns_beyond_popularity():
    data = make_synthetic(num_users=1000, num_items=500, mean_interactions=20,
                          seed=0)

    def fit(name, **kwargs):
        seed_everything(0)
        from pyg_mmrec.models import get_model
        model = get_model(name)(data, **kwargs)
        return make_trainer(model, data, epochs=15, patience=15, lr=5e-3,
                            batch_size=512).fit()['test']['recall@20']

    assert fit('fmcns') > 1.3 * fit('pop')


def test_no_flow_ablation_leaves_the_generator_out(data, monkeypatch):
    model = FMCNS(data, flow_weight=0.0, flow_mix=0.0)
    assert not model.use_flow
    anchors = []
    anchor = model.causal_sampler.anchor

    def recording_anchor(pos, pos_emb, pos_generated=None):
        anchors.append(pos_generated)
        return anchor(pos, pos_emb, pos_generated)

    monkeypatch.setattr(model.causal_sampler, 'anchor', recording_anchor)
    monkeypatch.setattr(model, 'generate', lambda: pytest.fail('sampled'))
    model.train()
    model.on_epoch_start(1)
    assert set(model(batch_of(data))) == {'bpr'}
    model.on_epoch_end(1)
    assert not bool(model.has_generated)
    terms = model(batch_of(data))
    assert set(terms) == {'bpr', 'bpr_causal'}
    # The causal anchor is the item's graph embedding alone:
    assert anchors == [None]
    # Evaluation propagates the graph-smoothed item input, no generator:
    model.eval()
    user, item = model.encode()
    h = model.item_graph_embedding()
    ref_user, ref_item = model.propagate(h, model.adj)
    assert (torch.allclose(user, ref_user) and
            torch.allclose(item, ref_item + h))
    # No flow parameter is touched by the loss.
    model.train()
    sum(model(batch_of(data)).values()).backward()
    assert all(p.grad is None for p in model.flow.parameters())


def test_fmcns_trains_with_its_own_batch_size_and_lr_by_default(data):
    from pyg_mmrec.config import resolve_config
    from pyg_mmrec.experiment import run_experiment
    sections = resolve_config('fmcns', {})
    assert (sections['trainer'], sections['loader']) == (
        {'lr': 5e-4}, {'batch_size': 512})
    sections = resolve_config('fmcns', {'batch_size': 64})
    assert (sections['trainer'], sections['loader']) == (
        {'lr': 5e-4}, {'batch_size': 64})
    res = run_experiment('fmcns', 'synthetic', data=data, progress=False,
                         config={'epochs': 1})
    assert res['config']['trainer']['lr'] == 5e-4
    assert res['config']['loader']['batch_size'] == 512
    assert resolve_config('lightgcn', {}) == {
        'model': {}, 'trainer': {}, 'loader': {}, 'evaluation': {}}
