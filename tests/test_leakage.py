"""The "No leakage" contract (``DESIGN.md``): only training interactions reach
a model. Graphs, samplers, counts, generated graphs and diffusion rows are
built from the training split alone, so validation and test interactions
can change nothing in training.

Two datasets share users, items, features and training interactions and
differ in every validation and test pair (the held-out pairs of one are
non-training pairs of the other, so an ``all interactions`` sampler or graph
sees different data). Every model of the registry, trained on each with the
same seed, must give identical losses and an identical state (parameters,
all buffers, sparse graphs, graph attributes, optimiser state); every
sparse user-item buffer must hold training pairs only, every sorted pair-key
lookup must hold training keys only, every count buffer must count training
pairs only.

Bugs these tests catch (each checked by injecting it alone):

(a) the trainer's batch source (its :class:`PairIndex`) built from all
    interactions;
(b) Pop's ``item_count`` from all interactions;
(c) FMCNS's :class:`CausalNegativeSampler` built from all interactions;
(d) MDMNS's graphs (``adj``, ``norm_interactions``) from all interactions;
(e) MDMNS's denoiser rows (``interactions``) from all interactions;
(f) LightGCN's or FREEDOM's ``adj`` from all interactions.

Training on sampled subgraphs (``sampler='neighbor'``, bug (g)) is checked
in ``test_leakage_subgraph.py``; the datasets and the state comparison are
in ``leakage_helpers.py``.
"""
import re

import pytest
import torch
from leakage_helpers import (
    BATCH_SIZE,
    EPOCHS,
    NUM_ITEMS,
    NUM_USERS,
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
from pyg_mmrec.train.checkpoint import seed_everything

#: Registry models with no user-item graph; every other model must hold one.
NO_GRAPH = {'pop', 'vbpr'}
#: Count buffers that must exist (so that the count check cannot be vacuous).
COUNTS = {'pop': {'item_count'}, 'fmcns': {'item_freq'}}
COUNT_NAME = re.compile(r'count|freq|popularity|degree')


def model_cases():
    r"""One case per registry model (its first setting)."""
    return [pytest.param(name, SETTINGS.get(name, [{}])[0], id=name)
            for name in MODELS]


def cases():
    r"""One case per registry model and setting."""
    out = []
    for name in MODELS:
        settings = SETTINGS.get(name, [{}])
        for j, kwargs in enumerate(settings):
            tag = name if len(settings) == 1 else f'{name}-{j}'
            out.append(pytest.param(name, kwargs, id=tag))
    return out


#: The fixtures of the helper module (``pair``, ``deterministic``).
pytest_plugins = ['leakage_helpers']
#: Every test runs with one thread and deterministic kernels.
pytestmark = pytest.mark.usefixtures('deterministic')


def make_trainer(model, data):
    return Trainer(model, data, progress=False, source=build_source(
        model, data, batch_size=BATCH_SIZE))


def epoch_start(trainer, epoch):
    r"""What an epoch does before the recommender's batches: the model's
    stages (MDMNS: denoisers, generated graphs), then its epoch hook."""
    for index, stage in enumerate(trainer.stages, start=1):
        trainer.run_stage(index, stage, epoch)
    trainer.net.on_epoch_start(epoch)


# 1. Training is blind to the held-out pairs -------------------------------
@pytest.mark.parametrize('name,kwargs', cases())
def test_training_is_identical_whatever_the_held_out_pairs(pair, name, kwargs):
    """Same seed, same training pairs, other val/test pairs: identical
    per-epoch losses and identical model and optimiser state."""
    runs = []
    for data in pair:
        model = build(name, kwargs, data)
        trainer = make_trainer(model, data)
        losses = []
        if model.trainable:
            losses = [trainer.train_epoch(epoch)
                      for epoch in range(1, EPOCHS + 1)]
            optim = {}
            nested_state(trainer.optimizer.state_dict(), 'optimizer', optim)
        else:
            model.eval()
            optim = {'scores': model.score(torch.arange(NUM_USERS))}
        runs.append((losses, model_state(model), optim))
    (loss_a, state_a, optim_a), (loss_b, state_b, optim_b) = runs
    assert loss_a == loss_b
    assert_same_state(state_a, state_b)
    assert_same_state(optim_a, optim_b)


# 2. Samplers and graph builders on their own --------------------------------
def test_trainer_negative_sampler_is_blind_to_held_out_pairs(pair):
    """The trainer's batch source: training keys only, the same draws."""
    sources = [make_trainer(build('pop', {}, data), data).source
               for data in pair]
    train = split_edge_index(pair[0], 'train')
    expected = torch.unique(train[0] * NUM_ITEMS + train[1])
    users = train[0].repeat(5)
    draws = []
    for source in sources:
        assert torch.equal(source.graph.keys, expected)
        gen = torch.Generator().manual_seed(0)
        epoch = list(source.batches(1, gen))
        draws.append((source.graph.uniform_negatives(users, gen),
                      torch.cat([b.neg for b in epoch])))
    assert torch.equal(draws[0][0], draws[1][0])
    assert torch.equal(draws[0][1], draws[1][1])


def test_causal_sampler_is_blind_to_held_out_pairs(pair):
    """FMCNS's causal sampler: the same buffers and the same negatives."""
    samplers = [build('fmcns', {}, data).causal_sampler for data in pair]
    assert_same_state(model_state(samplers[0]), model_state(samplers[1]))
    gen = torch.Generator().manual_seed(0)
    item_emb = torch.randn(NUM_ITEMS, 8, generator=gen)
    generated = torch.randn(NUM_ITEMS, 8, generator=gen)
    user, pos = split_edge_index(pair[0], 'train')
    draws = []
    for sampler in samplers:
        gen = torch.Generator().manual_seed(1)
        draws.append((sampler.sample(user, pos, item_emb, generated, gen),
                      sampler.pairs.uniform_negatives(user, gen),
                      sampler.popularity_mask(torch.arange(NUM_ITEMS))))
    for x, y in zip(*draws):
        assert torch.equal(x, y)


@pytest.mark.parametrize('name,kwargs', model_cases())
def test_model_graphs_are_blind_to_held_out_pairs(pair, name, kwargs):
    """The graphs a model builds (bipartite adjacency, pruning weights,
    interaction matrices, per-epoch pruned and generated graphs) and its
    scores do not depend on the held-out pairs."""
    states = []
    for data in pair:
        model = build(name, kwargs, data)
        built = model_state(model)
        seed_everything(1)
        epoch_start(make_trainer(model, data), 1)
        model.eval()
        scores = model.score(torch.arange(NUM_USERS))
        states.append((built, model_state(model), {'scores': scores}))
    for x, y in zip(*states):
        assert_same_state(x, y)


# 3. Structure: nothing held out is stored -----------------------------------
def sparse_entries(t):
    if t.layout == torch.sparse_csr:
        row = torch.repeat_interleave(torch.arange(t.size(0)),
                                      t.crow_indices().diff())
        return row, t.col_indices()
    index = (t if t.layout == torch.sparse_coo else t.to_sparse_coo())
    index = index.coalesce().indices()
    return index[0], index[1]


def pair_keys(row, col, shape):
    r"""Keys :obj:`user * I + item` of the user-item entries of a matrix of
    :obj:`shape` (:obj:`None` if it is no user-item matrix)."""
    U, I = NUM_USERS, NUM_ITEMS  # noqa: E741
    if shape == (U + I, U + I):
        ui = (row < U) & (col >= U)
        iu = (row >= U) & (col < U)
        return torch.cat([row[ui] * I + col[ui] - U,
                          col[iu] * I + row[iu] - U])
    if shape == (U, I):
        return row * I + col
    if shape == (I, U):
        return col * I + row
    return None


def stored_pairs(name, t):
    r"""The (user, item) keys a buffer stores, or :obj:`None`: sparse and
    dense user-item matrices, :obj:`[2, E]` (user, item) index lists and
    sorted :obj:`keys` lookups."""
    shape = tuple(t.shape)
    if t.is_sparse or t.layout == torch.sparse_csr:
        return pair_keys(*sparse_entries(t), shape)
    if t.dtype in (torch.float16, torch.bfloat16, torch.float32,
                   torch.float64, torch.bool) and t.dim() == 2:
        row, col = t.nonzero().t()
        return pair_keys(row, col, shape)
    if t.dtype == torch.long and name.split('.')[-1] == 'keys':
        return t
    if (t.dtype == torch.long and t.dim() == 2 and shape[0] == 2
            and t.numel() > 0 and int(t[0].max()) < NUM_USERS
            and int(t[1].max()) < NUM_ITEMS):
        return t[0] * NUM_ITEMS + t[1]
    return None


@pytest.mark.parametrize('name,kwargs', model_cases())
def test_no_held_out_pair_is_stored(pair, name, kwargs):
    """No validation/test pair in any adjacency buffer, pair list or sampler
    key lookup; count buffers count training pairs only."""
    data = pair[0]
    model = build(name, kwargs, data)
    trainer = make_trainer(model, data)
    epoch_start(trainer, 1)  # per-epoch graphs (pruning, generation)
    train = split_edge_index(data, 'train')
    train_keys = torch.unique(train[0] * NUM_ITEMS + train[1])
    held = held_out_pairs(data)
    held_keys = held[0] * NUM_ITEMS + held[1]

    buffers = dict(model.named_buffers(remove_duplicate=False))
    buffers['trainer.source.graph.keys'] = trainer.source.graph.keys
    graphs, lookups = [], []
    for bname, t in buffers.items():
        keys = stored_pairs(bname, t)
        if keys is None or keys.numel() == 0:
            continue
        (lookups if keys is t else graphs).append(bname)
        leaked = torch.isin(held_keys, keys)
        assert not leaked.any(), (
            f"{bname} holds {int(leaked.sum())} held-out pairs, e.g. (user, "
            f"item) = {tuple(held[:, leaked.nonzero()[0, 0]].tolist())}")
        assert torch.isin(keys, train_keys).all(), bname
    if name not in NO_GRAPH:
        assert graphs, (f"no user-item adjacency found among {name}'s "
                        f"buffers {sorted(buffers)}: add {name!r} to NO_GRAPH "
                        f"if it has none")
    if name == 'fmcns':
        assert 'causal_sampler.pairs.keys' in lookups

    counts = {NUM_ITEMS: torch.bincount(train[1], minlength=NUM_ITEMS),
              NUM_USERS: torch.bincount(train[0], minlength=NUM_USERS)}
    checked = set()
    for bname, t in buffers.items():
        short = bname.split('.')[-1]
        if (t.layout == torch.strided and t.dim() == 1
                and t.numel() in counts and COUNT_NAME.search(short)):
            t, count = t.double(), counts[t.numel()].double()
            # equal up to a normalisation (counts or frequencies)
            assert torch.allclose(t * count.sum(), count * t.sum()), bname
            checked.add(short)
    assert COUNTS.get(name, set()) <= checked, checked

