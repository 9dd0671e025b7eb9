import numpy as np
import pytest
import torch
from scipy.sparse.linalg import svds

from pyg_mmrec.data import (
    INTERACTS,
    add_synthetic_features,
    item_features,
    make_synthetic,
    modalities,
    num_items,
    num_users,
    read_mmrec,
    split_edge_index,
)

#: A denser setting than the defaults, on which the statistics below are
#: checked.
DENSE = dict(num_users=2000, num_items=1000, mean_interactions=22.0)


@pytest.fixture(scope='module')
def data():
    return make_synthetic(**DENSE)


def dense(data, split):
    out = torch.zeros(num_users(data), num_items(data))
    u, i = split_edge_index(data, split)
    out[u, i] = 1.0
    return out


def recall_at(k, scores, data):
    r"""Recall@k on the test split, training and validation items masked."""
    seen, truth = _eval_masks(data)
    scores = scores.masked_fill(seen, -float('inf'))
    top = scores.topk(k, dim=1).indices
    hits = truth.gather(1, top).sum(1)
    n = truth.sum(1)
    has = n > 0
    return float((hits[has] / n[has]).mean())


_MASKS = {}


def _eval_masks(data):
    if id(data) not in _MASKS:
        seen = (dense(data, 'train') + dense(data, 'val')) > 0
        _MASKS[id(data)] = (data, seen, dense(data, 'test'))
    return _MASKS[id(data)][1:]


def profile_scores(data, feat):
    x = torch.nn.functional.normalize(feat, dim=1)
    train = dense(data, 'train')
    profile = train @ x / train.sum(1, keepdim=True).clamp(min=1)
    return profile @ x.t()


def test_defaults():
    data = make_synthetic()
    assert data.name == 'synthetic'
    assert (num_users(data), num_items(data)) == (4000, 3000)
    assert 7 <= data['user', 'interacts', 'item'].num_edges / 4000 <= 9
    assert modalities(data) == ['image', 'text']
    feats = item_features(data)
    assert feats['image'].shape == (3000, 64)
    assert feats['text'].shape == (3000, 32)
    assert all(x.dtype == torch.float32 for x in feats.values())


def test_deterministic_per_seed():
    a, b = make_synthetic(seed=3), make_synthetic(seed=3)
    c = make_synthetic(seed=4)
    sa, sb, sc = a[INTERACTS], b[INTERACTS], c[INTERACTS]
    assert torch.equal(sa.edge_index, sb.edge_index)
    for split in ('train', 'val', 'test'):
        assert torch.equal(sa[f'{split}_mask'], sb[f'{split}_mask'])
    for m in ('image', 'text'):
        assert torch.equal(a['item'][f'x_{m}'], b['item'][f'x_{m}'])
        assert not torch.equal(a['item'][f'x_{m}'], c['item'][f'x_{m}'])
    assert sa.edge_index.shape != sc.edge_index.shape or \
        not torch.equal(sa.edge_index, sc.edge_index)


def test_does_not_touch_global_rng():
    torch.manual_seed(0)
    np.random.seed(0)
    expected = (torch.rand(3), np.random.rand(3))
    torch.manual_seed(0)
    np.random.seed(0)
    make_synthetic(num_users=50, num_items=40)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])


def test_activity_and_popularity(data):
    edge_index = data[INTERACTS].edge_index
    user_deg = torch.bincount(edge_index[0], minlength=2000)
    item_deg = torch.bincount(edge_index[1], minlength=1000)
    assert int(user_deg.min()) >= 5
    assert 18 <= float(user_deg.float().mean()) <= 26
    # Heavy tails: the most active user and most popular item are far above
    # the median.
    assert int(user_deg.max()) >= 5 * float(user_deg.float().median())
    assert int(item_deg.max()) >= 5 * float(item_deg.float().median())
    top = item_deg.sort(descending=True).values
    assert float(top[:100].sum() / top.sum()) > 0.2


def test_mmrec_split_rule(data):
    store = data[INTERACTS]
    user = store.edge_index[0]
    n = torch.bincount(user, minlength=2000)
    val = torch.bincount(user[store.val_mask], minlength=2000)
    test = torch.bincount(user[store.test_mask], minlength=2000)
    vt = torch.where(n < 10, torch.full_like(n, 2), (0.2 * n).long())
    assert torch.equal(val, vt // 2)
    assert torch.equal(test, vt - vt // 2)
    assert bool((n - vt > 0).all())  # every user has training items


def test_features_carry_preference_signal(data):
    gen = torch.Generator().manual_seed(0)
    rand = recall_at(20, torch.rand(2000, 1000, generator=gen), data)
    perm = torch.randperm(1000, generator=torch.Generator().manual_seed(1))
    for m, x in item_features(data).items():
        signal = recall_at(20, profile_scores(data, x), data)
        shuffled = recall_at(20, profile_scores(data, x[perm]), data)
        assert signal > 3 * rand, (m, signal, rand)
        assert signal > 3 * shuffled, (m, signal, shuffled)


def test_collaborative_signal_beats_popularity(data):
    # A rank-16 factorisation of the training matrix (a stand-in for a
    # trained collaborative model) must clearly beat popularity.
    train = dense(data, 'train')
    pop = train.sum(0, keepdim=True).expand(2000, -1)
    u, s, vt = svds(train.double().numpy(), k=16,
                    v0=np.ones(min(train.shape)))
    mf = torch.from_numpy((u * s) @ vt).float()
    r_pop, r_mf = recall_at(20, pop, data), recall_at(20, mf, data)
    assert r_mf > 1.5 * r_pop, (r_mf, r_pop)


def test_custom_sizes_and_modalities():
    d = make_synthetic(num_users=300, num_items=200, modalities={
        'audio': 8, 'image': 5}, mean_interactions=12, seed=7)
    assert (num_users(d), num_items(d)) == (300, 200)
    assert modalities(d) == ['image', 'audio']
    assert d['item'].x_audio.shape == (200, 8)
    empty = make_synthetic(num_users=30, num_items=40, modalities={})
    assert modalities(empty) == []


@pytest.mark.parametrize('kwargs,match', [
    (dict(min_interactions=2), 'min_interactions'),
    (dict(num_items=8), 'num_items'),
    (dict(mean_interactions=4), 'mean_interactions'),
    (dict(activity_exponent=1.0), 'activity_exponent'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic(**kwargs)


def test_add_synthetic_features():
    base = make_synthetic(modalities={}, seed=2, **DENSE)
    out = add_synthetic_features(base, {'image': 16, 'text': 8}, seed=0)
    again = add_synthetic_features(base, {'image': 16, 'text': 8}, seed=0)
    assert modalities(base) == []  # the input is unchanged
    assert modalities(out) == ['image', 'text']
    assert out['item'].x_image.shape == (1000, 16)
    assert torch.equal(out['item'].x_image, again['item'].x_image)
    x = out['item'].x_image
    perm = torch.randperm(1000, generator=torch.Generator().manual_seed(0))
    assert recall_at(20, profile_scores(out, x), out) > \
        2 * recall_at(20, profile_scores(out, x[perm]), out)


def test_real_interactions_with_synthetic_features(real_dataset):
    data = read_mmrec(str(real_dataset('baby')))
    out = add_synthetic_features(data, {'image': 32, 'text': 16})
    assert out['item'].x_image.shape == (7050, 32)
    assert bool(torch.isfinite(out['item'].x_text).all())
