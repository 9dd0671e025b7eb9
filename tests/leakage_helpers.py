"""Shared parts of the "No leakage" tests (``test_leakage.py`` and
``test_leakage_subgraph.py``): the sizes and model settings, the pair of
datasets that differ in their held-out pairs only, and the comparison of
model states."""

import numpy as np
import pytest
import torch

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.data.hetero import (
    INTERACTS,
    build_hetero_data,
    item_features,
    split_edge_index,
)
from pyg_mmrec.models import MODELS
from pyg_mmrec.train.checkpoint import seed_everything

NUM_USERS, NUM_ITEMS = 300, 120  # U != I and U + I != either: shapes tell
EPOCHS = 3  # FMCNS draws causal negatives from epoch 2 on
BATCH_SIZE = 512

MDMNS_SMALL = dict(embedding_dim=16, denoiser_hidden=32)
#: Constructor settings per model (several: one case each); default: [{}].
SETTINGS = {
    'mdmns': [dict(MDMNS_SMALL, cl_method=0), dict(MDMNS_SMALL, cl_method=1)],
}


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


def make_pair():
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


@pytest.fixture(scope='module')
def pair():
    r"""Datasets A and B: identical but for their validation/test pairs
    (a fixture: import it into a test module to use it)."""
    return make_pair()


@pytest.fixture
def deterministic():
    r"""One thread and deterministic kernels, so that a run repeats bit for
    bit whatever the machine (restored afterwards). Import it into a test
    module with :obj:`pytestmark = pytest.mark.usefixtures(...)`."""
    threads = torch.get_num_threads()
    previous = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.set_num_threads(threads)


# State comparison -----------------------------------------------------------
def nested_state(value, prefix, out, depth=0):
    if isinstance(value, torch.Tensor):
        out[prefix] = value.detach()
    elif depth < 4 and isinstance(value, dict):
        for k, v in value.items():
            nested_state(v, f'{prefix}[{k!r}]', out, depth + 1)
    elif depth < 4 and isinstance(value, (list, tuple)):
        for k, v in enumerate(value):
            nested_state(v, f'{prefix}[{k}]', out, depth + 1)
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
            nested_state(v, f'extra {n}', out)
    for mname, module in model.named_modules(remove_duplicate=False):
        for attr, value in vars(module).items():
            if attr not in ('_parameters', '_buffers', '_modules'):
                found = {}
                nested_state(value, f'attr {mname}.{attr}', found)
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
