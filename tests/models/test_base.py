"""The base class's contract: the subgraph check and the repr every model
gets."""
import pathlib

import pytest
import torch

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.loader import BPRBatch, Subgraph
from pyg_mmrec.models import MODELS, Recommender

#: Small settings of the slow-to-build models.
SMALL = {'mdmns': dict(embedding_dim=8, denoiser_hidden=16),
         'genrec': dict(embedding_dim=8, denoiser_hidden=16,
                        denoiser_layers=1, denoiser_heads=2,
                        denoiser_ff=16)}


@pytest.fixture(scope='module')
def small():
    return make_synthetic(num_users=60, num_items=40, seed=3)


def subgraph_batch(data):
    graph = train_graph(data)
    users, items = torch.arange(0, 60, 2), torch.arange(40)
    sub = Subgraph.induced(graph, users, items)
    edge = sub.edge_index[:, :8]
    user, pos = sub.user_id[edge[0]], sub.item_id[edge[1]]
    neg = torch.randint(40, (user.numel(), ),
                        generator=torch.Generator().manual_seed(0))
    return BPRBatch(user, pos, neg, subgraph=sub,
                    intervention=neg.flip(0))


@pytest.mark.parametrize('name', sorted(
    n for n, cls in MODELS.items() if cls.trainable))
def test_models_without_subgraph_support_refuse_subgraphs(small, name):
    cls = MODELS[name]
    model = cls(small, **SMALL.get(name, {}))
    batch = subgraph_batch(small)
    if cls.supports_subgraph:
        terms = model(batch)
        assert all(torch.isfinite(t) for t in terms.values())
        user, item = model.encode(batch.subgraph)
        assert user.size(0) == batch.subgraph.num_users
        assert item.size(0) == batch.subgraph.num_items
        return
    # the base class checks forward() (a pre-hook, positional or keyword
    # batch) and encode(), before the model's own code runs
    for call in (lambda: model(batch), lambda: model(batch=batch),
                 lambda: model.encode(batch.subgraph)):
        with pytest.raises(ValueError, match=(
                f'{cls.__name__} encodes the whole training graph and '
                f'cannot train on sampled subgraphs; use full-graph '
                f'batches')):
            call()
    model.encode()  # the full graph is fine


def test_a_new_models_encode_is_checked_and_keeps_its_docstring(small):
    class Whole(Recommender):
        def encode(self, subgraph=None):
            r"""The whole graph."""
            return torch.zeros(self.num_users, 1), torch.zeros(
                self.num_items, 1)

    class Sub(Whole):
        supports_subgraph = True

    sub = subgraph_batch(small).subgraph
    with pytest.raises(ValueError, match='Whole encodes the whole'):
        Whole(small).encode(sub)
    assert Sub(small).encode(sub)[0].shape == (60, 1)
    assert Whole.encode.__doc__ == 'The whole graph.'
    assert Whole(small).encode()[0].shape == (60, 1)


def test_no_model_checks_subgraphs_itself():
    models = pathlib.Path(MODELS['lightgcn'].__module__.replace('.', '/'))
    root = pathlib.Path(__file__).resolve().parents[2] / models.parent
    for path in root.glob('*.py'):
        if path.name != 'base.py':
            assert 'check_subgraph(' not in path.read_text(), path.name


@pytest.mark.parametrize('name', list(MODELS))
def test_every_model_has_the_one_repr_convention(small, name):
    model = MODELS[name](small, **SMALL.get(name, {}))
    prefix = f'{type(model).__name__}(num_users=60, num_items=40'
    text = repr(model)
    assert text.startswith(prefix) and text.endswith(')'), text
    for key in model.repr_settings:  # every named setting, with its value
        assert f'{key}={getattr(model, key)!r}' in text
    assert '__repr__' not in vars(type(model)), 'a repr of its own'
