import pytest
import torch
from trainer_factory import make_trainer

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.loader import BPRBatch, DistinctUserSource
from pyg_mmrec.models import MCLN, get_model
from pyg_mmrec.train.checkpoint import seed_everything


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=120, num_items=80, seed=3)


def test_uses_the_distinct_user_source_and_needs_interventions(data):
    model = MCLN(data)
    trainer = make_trainer(model, data, epochs=1, batch_size=50)
    assert isinstance(trainer.source, DistinctUserSource)
    batch = next(iter(trainer.source.batches(1, torch.Generator())))
    terms = model(batch)
    assert set(terms) == {'bpr_id', 'bpr_image', 'bpr_text', 'bpr_cf', 'reg'}
    with pytest.raises(ValueError, match='intervention'):
        model(BPRBatch(batch.user, batch.pos, batch.neg))


def test_adjacency_is_the_asymmetric_normalisation_with_self_loops(data):
    model = MCLN(data, exponents=(-0.5, -0.3))
    U, I = model.num_users, model.num_items  # noqa: E741
    edge = train_graph(data).edge_index
    a = torch.zeros(U + I, U + I)
    a[edge[0], U + edge[1]] = 1
    a[U + edge[1], edge[0]] = 1
    a += torch.eye(U + I)
    d = a.sum(1)
    expected = d.pow(-0.5).view(-1, 1) * a * d.pow(-0.3).view(1, -1)
    torch.testing.assert_close(model.adj.to_dense(), expected)


def test_full_ranking_scores_do_not_depend_on_the_ranked_set(data):
    torch.manual_seed(0)
    for scoring in ('diagonal', 'chunks'):
        model = MCLN(data, scoring=scoring, chunk_size=16,
                     transductive=False).eval()
        users = torch.tensor([1, 5])
        items = torch.tensor([[3, 9, 20], [40, 2, 2]])
        torch.testing.assert_close(model.score(users, items),
                                   model.score(users).gather(1, items))


def test_chunks_attend_within_their_chunk_only(data):
    model = MCLN(data, scoring='chunks', chunk_size=16).eval()
    chunks = model.chunk_order.split(16)
    first, other = chunks[0], chunks[1]
    _, before = model.encode()
    with torch.no_grad():  # change the features of another chunk's items
        model.features.x_image[other] += 1.0
    _, after = model.encode()
    d = model.embedding_dim
    m_before, m_after = before[:, -d:], after[:, -d:]
    torch.testing.assert_close(m_after[first], m_before[first])
    assert not torch.allclose(m_after[other], m_before[other])


def test_image_weight_applies_at_test_only(data):
    seed_everything(0)
    model = MCLN(data, image_test_weight=0.3).eval()
    users = torch.tensor([0, 4])
    items = torch.tensor([[1, 2, 3], [4, 5, 6]])
    base = MCLN(data, image_test_weight=1.0)
    base.load_state_dict(model.state_dict())
    base.eval()
    u_g, i_g = model._graph_embeddings()
    v = model.features.project('image')
    diff = (u_g[users].unsqueeze(1) * v[items]).sum(-1) * 0.7
    torch.testing.assert_close(base.score(users, items) -
                               model.score(users, items), diff,
                               atol=1e-5, rtol=1e-4)
    model.train()
    batch = next(iter(DistinctUserSource(train_graph(data), 32).batches(
        1, torch.Generator().manual_seed(0))))
    base.train()
    seed_everything(1)
    a = model(batch)
    seed_everything(1)
    b = base(batch)
    for key in a:  # the training loss does not see the weight
        torch.testing.assert_close(a[key], b[key])


@pytest.mark.parametrize('protocol', [
    'full', pytest.param('sampled', marks=pytest.mark.slow)])
def test_short_run_beats_popularity(protocol):
    data = make_synthetic(num_users=500, num_items=300, mean_interactions=20,
                          seed=0)
    metric = 'recall@20' if protocol == 'full' else 'hit@10'

    def fit(name, epochs):
        seed_everything(0)
        model = get_model(name)(data)
        return make_trainer(model, data, epochs=epochs, patience=epochs,
                            batch_size=256, lr=5e-3,
                            protocol=protocol).fit()

    pop, mcln = fit('pop', 0), fit('mcln', 8)
    assert mcln['test'][metric] > 1.3 * pop['test'][metric], (
        mcln['test'], pop['test'])
    if protocol == 'sampled':
        assert 'transductive' in mcln['protocol']
    else:
        assert 'transductive' not in mcln['protocol']
