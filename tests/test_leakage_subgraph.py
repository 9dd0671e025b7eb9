"""The "No leakage" contract (``DESIGN.md``) for mini-batch training on
sampled subgraphs (``sampler='neighbor'``): the sampled subgraphs, the
positives and the negatives come from the training graph alone.

The same two datasets as ``test_leakage.py`` (``leakage_helpers.py``: equal
but for every validation and test pair). Every model with
``supports_subgraph``, with each negatives option of that sampler, trained
on each with the same seed, must give identical losses and an identical
state; the trainer's neighbour source must hold training pairs only.

Bug these tests catch (checked by injecting it alone):

(g) the trainer's :class:`NeighborSource` (``sampler='neighbor'``) built
    from all interactions, or its negatives avoiding all of them.
"""
import pytest
import torch
from leakage_helpers import (
    BATCH_SIZE,
    EPOCHS,
    NUM_ITEMS,
    SETTINGS,
    assert_same_state,
    build,
    held_out_pairs,
    model_state,
    nested_state,
)

from pyg_mmrec.data.hetero import split_edge_index
from pyg_mmrec.models import MODELS
from pyg_mmrec.train import Trainer, build_source

#: The fixtures of the helper module (``pair``, ``deterministic``).
pytest_plugins = ['leakage_helpers']
#: Every test runs with one thread and deterministic kernels.
pytestmark = pytest.mark.usefixtures('deterministic')


# Mini-batch training on sampled subgraphs -----------------------------------
#: Every negatives option of ``sampler='neighbor'`` (the Trainer's
#: docstring): true negatives, popularity negatives, the loader's own.
NEIGHBOR_NEGATIVES = ('uniform', 'popularity', 'loader')
NUM_NEIGHBORS = '5,5'
NEIGHBOR_EPOCHS = EPOCHS
#: Cases that take several seconds each (mark slow).
SLOW_SUBGRAPH = set()


def subgraph_models():
    r"""The registry models that train on sampled subgraphs."""
    return [name for name in MODELS
            if getattr(MODELS[name], 'supports_subgraph', False)]


def subgraph_cases():
    r"""One case per subgraph model, setting and negatives option."""
    out = []
    for name in subgraph_models():
        settings = SETTINGS.get(name, [{}])
        for j, kwargs in enumerate(settings):
            tag = name if len(settings) == 1 else f'{name}-{j}'
            # a negative-free model ignores the option: one case
            options = (NEIGHBOR_NEGATIVES if MODELS[name].uses_negatives
                       else NEIGHBOR_NEGATIVES[:1])
            for negatives in options:
                marks = ([pytest.mark.slow] if name in SLOW_SUBGRAPH
                         else [])
                out.append(pytest.param(name, kwargs, negatives,
                                        id=f'{tag}-{negatives}',
                                        marks=marks))
    return out


def make_neighbor_trainer(model, data, negatives):
    return Trainer(model, data, progress=False, source=build_source(
        model, data, batch_size=BATCH_SIZE, sampler='neighbor',
        num_neighbors=NUM_NEIGHBORS, negatives=negatives))


def test_some_models_train_on_subgraphs():
    """The mini-batch cases below are not vacuous."""
    assert 'lightgcn' in subgraph_models()
    assert len(subgraph_cases()) >= 3 * len(NEIGHBOR_NEGATIVES)


@pytest.mark.parametrize('name,kwargs,negatives', subgraph_cases())
def test_subgraph_training_is_identical_whatever_the_held_out_pairs(
        pair, name, kwargs, negatives):
    """``sampler='neighbor'``: same seed, same training pairs, other
    val/test pairs: identical per-epoch losses and identical model and
    optimiser state (the sampled subgraphs, positives and negatives come
    from the training graph only)."""
    runs = []
    for data in pair:
        model = build(name, kwargs, data)
        trainer = make_neighbor_trainer(model, data, negatives)
        assert trainer.source.negatives_name == (
            negatives if MODELS[name].uses_negatives else 'none')
        losses = [trainer.train_epoch(epoch)
                  for epoch in range(1, NEIGHBOR_EPOCHS + 1)]
        optim = {}
        nested_state(trainer.optimizer.state_dict(), 'optimizer', optim)
        runs.append((losses, model_state(model), optim))
    (loss_a, state_a, optim_a), (loss_b, state_b, optim_b) = runs
    assert loss_a == loss_b
    assert_same_state(state_a, state_b)
    assert_same_state(optim_a, optim_b)


def batch_keys(batch):
    r"""Keys :obj:`user * I + item` of the positives, the negatives and the
    subgraph's edges of a mini-batch (global ids)."""
    sub = batch.subgraph
    row, col = sub.edge_index
    return (batch.user * NUM_ITEMS + batch.pos,
            None if batch.neg is None else batch.user * NUM_ITEMS + batch.neg,
            sub.user_id[row] * NUM_ITEMS + sub.item_id[col])


@pytest.mark.parametrize('name,kwargs,negatives', subgraph_cases())
def test_subgraph_batches_hold_training_pairs_only(pair, name, kwargs,
                                                   negatives):
    """The neighbour source of the trainer: its graph is the training graph
    (both edge types), an epoch's positives are every training pair once,
    every subgraph edge is a training pair, negatives are true negatives
    (but for the loader's own), and the draws do not depend on the
    held-out pairs."""
    train = split_edge_index(pair[0], 'train')
    train_keys = torch.unique(train[0] * NUM_ITEMS + train[1])
    epochs = []
    for data in pair:
        held = held_out_pairs(data)
        held_keys = held[0] * NUM_ITEMS + held[1]
        trainer = make_neighbor_trainer(build(name, kwargs, data), data,
                                        negatives)
        source = trainer.source
        assert torch.equal(source.graph.keys, train_keys)
        for edge_type in source.data.edge_types:
            if edge_type[0] == edge_type[-1]:  # REARM's homography graphs
                continue  # (built from the training pairs: same losses)
            index = source.data[edge_type].edge_index
            if edge_type[0] == 'item':
                index = index.flip(0)
            keys = torch.sort(index[0] * NUM_ITEMS + index[1]).values
            assert torch.equal(keys, train_keys), edge_type
        batches = list(source.batches(1, trainer.generator(1, 0)))
        assert len(batches) == len(source) > 1
        pos_keys, edge_keys = [], []
        for batch in batches:
            pos, neg, edges = batch_keys(batch)
            pos_keys.append(pos)
            edge_keys.append(edges)
            assert torch.isin(edges, train_keys).all()
            assert not torch.isin(edges, held_keys).any()
            if neg is None:  # a negative-free model's pairs
                assert not MODELS[name].uses_negatives
            elif negatives != 'loader':
                assert not torch.isin(neg, train_keys).any()
        pos_keys = torch.cat(pos_keys)
        assert torch.isin(pos_keys, train_keys).all()
        if getattr(source, 'every_pair_once', True):  # not MCLN's users
            assert torch.equal(torch.sort(pos_keys).values, train_keys)
        assert torch.cat(edge_keys).numel() > 2 * train_keys.numel()
        epochs.append(batches)
    for x, y in zip(*epochs):
        for a, b in zip(batch_keys(x), batch_keys(y)):
            assert (a is None and b is None) or torch.equal(a, b)
