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
(f) LightGCN's or FREEDOM's ``adj`` from all interactions;
(g) the trainer's :class:`NeighborSource` (``sampler='neighbor'``) built
    from all interactions, or its negatives avoiding all of them.

Every model with ``supports_subgraph`` is also trained on sampled
subgraphs, with each negatives option of that sampler (section 4).
"""
import re

import numpy as np
import pytest
import torch

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.data.hetero import (INTERACTS, build_hetero_data, item_features,
                                   split_edge_index)
from pyg_mmrec.models import MODELS
from pyg_mmrec.train import Trainer, build_source
from pyg_mmrec.train.checkpoint import seed_everything

NUM_USERS, NUM_ITEMS = 300, 120  # U != I and U + I != either: shapes tell
EPOCHS = 3  # FMCNS draws causal negatives from epoch 2 on
BATCH_SIZE = 512

MDMNS_SMALL = dict(embedding_dim=16, denoiser_hidden=32)
#: Constructor settings per model (several: one case each); default: [{}].
SETTINGS = {
    'mdmns': [dict(MDMNS_SMALL, cl_method=0), dict(MDMNS_SMALL, cl_method=1)],
}
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


# Data ---------------------------------------------------------------------
def held_out_pairs(data):
    return torch.cat([split_edge_index(data, 'val'),
                      split_edge_index(data, 'test')], dim=1)


def resplit(data, seed=1):
    r"""A copy of :obj:`data` with the same training pairs and features and,
    per user, as many validation and test pairs on other non-training items
    (none of the original held-out items)."""
    rng = np.random.default_rng(seed)
    train = split_edge_index(data, 'train').numpy()
    users, items, splits = [train[0]], [train[1]], [np.zeros(train.shape[1])]
    taken = {}
    for u, i in zip(*np.concatenate([train, held_out_pairs(data).numpy()], 1)):
        taken.setdefault(int(u), set()).add(int(i))
    for code, split in ((1, 'val'), (2, 'test')):
        user = split_edge_index(data, split)[0].numpy()
        for u, n in zip(*np.unique(user, return_counts=True)):
            free = np.setdiff1d(np.arange(NUM_ITEMS), sorted(taken[int(u)]))
            pick = rng.choice(free, size=n, replace=False)
            taken[int(u)].update(pick.tolist())
            users.append(np.full(n, u))
            items.append(pick)
            splits.append(np.full(n, code))
    feats = {m: x.numpy() for m, x in item_features(data).items()}
    return build_hetero_data(np.concatenate(users), np.concatenate(items),
                             np.concatenate(splits), NUM_USERS, NUM_ITEMS,
                             feats, name=data.name)


@pytest.fixture(scope='module')
def pair():
    r"""Datasets A and B: identical but for their validation/test pairs."""
    a = make_synthetic(num_users=NUM_USERS, num_items=NUM_ITEMS,
                       mean_interactions=16, seed=5)
    b = resplit(a)
    assert torch.equal(split_edge_index(a, 'train'),
                       split_edge_index(b, 'train'))
    for m, x in item_features(a).items():
        assert torch.equal(x, item_features(b)[m])
    keys = [set((p[0] * NUM_ITEMS + p[1]).tolist())
            for p in (held_out_pairs(a), held_out_pairs(b))]
    assert not keys[0] & keys[1]
    share = len(keys[0]) / a[INTERACTS].edge_index.size(1)
    assert 0.1 <= share <= 0.25, share
    return a, b


@pytest.fixture(autouse=True)
def deterministic():
    r"""One thread and deterministic kernels, so that a run repeats bit for
    bit whatever the machine (restored afterwards)."""
    threads = torch.get_num_threads()
    previous = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(previous)
    torch.set_num_threads(threads)


# State comparison -----------------------------------------------------------
def _nested(value, prefix, out, depth=0):
    if isinstance(value, torch.Tensor):
        out[prefix] = value.detach()
    elif depth < 4 and isinstance(value, dict):
        for k, v in value.items():
            _nested(v, f'{prefix}[{k!r}]', out, depth + 1)
    elif depth < 4 and isinstance(value, (list, tuple)):
        for k, v in enumerate(value):
            _nested(v, f'{prefix}[{k}]', out, depth + 1)
    elif isinstance(value, (int, float, str, bool, type(None))):
        out[prefix] = value


def model_state(model):
    r"""Every parameter, every buffer (persistent or not, of every submodule,
    aliases included), the state dict's extra state and every tensor held in
    a plain module attribute (e.g. cached generated graphs)."""
    out = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        out[f'param {n}'] = p.detach()
    for n, b in model.named_buffers(remove_duplicate=False):
        out[f'buffer {n}'] = b
    for n, v in model.state_dict().items():
        if n.endswith('_extra_state'):
            _nested(v, f'extra {n}', out)
    for mname, module in model.named_modules(remove_duplicate=False):
        for attr, value in vars(module).items():
            if attr not in ('_parameters', '_buffers', '_modules'):
                found = {}
                _nested(value, f'attr {mname}.{attr}', found)
                out.update({k: v for k, v in found.items()
                            if isinstance(v, torch.Tensor)})
    return out


def assert_same_tensor(a, b, what):
    assert a.layout == b.layout and a.shape == b.shape, what
    assert a.dtype == b.dtype, what
    if a.layout == torch.sparse_csr:
        assert torch.equal(a.crow_indices(), b.crow_indices()), what
        assert torch.equal(a.col_indices(), b.col_indices()), what
        assert torch.equal(a.values(), b.values()), what
    elif a.is_sparse:
        a, b = a.coalesce(), b.coalesce()
        assert torch.equal(a.indices(), b.indices()), what
        assert torch.equal(a.values(), b.values()), what
    else:
        assert torch.equal(a, b), what


def assert_same_state(sa, sb):
    assert sa.keys() == sb.keys()
    for key in sa:
        if isinstance(sa[key], torch.Tensor):
            assert_same_tensor(sa[key], sb[key], key)
        else:
            assert sa[key] == sb[key], key


def build(name, kwargs, data, seed=0):
    seed_everything(seed)
    return MODELS[name](data, **kwargs)


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
            _nested(trainer.optimizer.state_dict(), 'optimizer', optim)
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
    U, I = NUM_USERS, NUM_ITEMS
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


# 4. Mini-batch training on sampled subgraphs --------------------------------
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
            for negatives in NEIGHBOR_NEGATIVES:
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
        assert trainer.source.negatives_name == negatives
        losses = [trainer.train_epoch(epoch)
                  for epoch in range(1, NEIGHBOR_EPOCHS + 1)]
        optim = {}
        _nested(trainer.optimizer.state_dict(), 'optimizer', optim)
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
            batch.user * NUM_ITEMS + batch.neg,
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
            if negatives != 'loader':
                assert not torch.isin(neg, train_keys).any()
        assert torch.equal(torch.sort(torch.cat(pos_keys)).values, train_keys)
        assert torch.cat(edge_keys).numel() > 2 * train_keys.numel()
        epochs.append(batches)
    for x, y in zip(*epochs):
        for a, b in zip(batch_keys(x), batch_keys(y)):
            assert torch.equal(a, b)
