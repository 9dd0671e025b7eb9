import pytest
import torch
from sampling_helpers import top_k_sets

from pyg_mmrec.graphs import PairIndex
from pyg_mmrec.nn import (
    CausalNegativeSampler,
    PopularityNegativeSampler,
    item_frequency,
)
from pyg_mmrec.nn.negative_sampling import column_at_rank


def random_pairs(num_users, num_items, num_edges, seed=0):
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randint(num_users * num_items, (num_edges, ), generator=gen)
    keys = keys.unique()
    return torch.stack([keys // num_items, keys % num_items])


def make(pairs, num_items, num_users=None, **kwargs):
    r"""The sampler of training pairs :obj:`pairs` (users: largest id + 1
    unless given)."""
    if num_users is None:
        num_users = int(pairs[0].max()) + 1 if pairs.numel() else 1
    return CausalNegativeSampler(PairIndex(pairs, num_users, num_items),
                                 **kwargs)


def positive_set(pairs):
    return set(map(tuple, pairs.t().tolist()))


def test_item_frequency():
    pairs = torch.tensor([[0, 0, 1, 2, 2], [1, 3, 1, 1, 1]])  # (2, 1) twice
    freq = item_frequency(PairIndex(pairs, 4, 5))
    assert torch.allclose(freq, torch.tensor([0.0, 0.75, 0.0, 0.25, 0.0]))
    sampler = make(pairs, 5, num_users=4)
    assert torch.allclose(sampler.freq, freq)


def test_defaults_and_repr():
    pairs = random_pairs(20, 5000, 3000)
    sampler = make(pairs, 5000)
    assert (sampler.num_candidates, sampler.top_k) == (1000, 100)
    assert str(sampler) == ('CausalNegativeSampler(num_items=5000, beta=3.0, '
                            'num_candidates=1000, top_k=100)')
    original = make(pairs, 5000, num_candidates=None)
    assert (original.num_candidates, original.top_k) == (750, 75)
    small = make(pairs[:, pairs[1] < 30], 30, top_k=50)
    assert (small.num_candidates, small.top_k) == (30, 30)
    assert len(list(sampler.parameters())) == 0
    assert len(sampler.state_dict()) == 0
    sampler.reset_parameters()


def test_popularity_mask():
    pairs = torch.zeros(2, 0, dtype=torch.long)
    freq = torch.tensor([0.25, 0.5, 0.75])  # mean 0.5 exactly
    sampler = make(pairs, 3, freq=freq)
    m = sampler.popularity_mask(torch.arange(3))
    assert m[0] > 0.5 and m[1] == 0.5 and m[2] < 0.5
    expected = torch.sigmoid(-3.0 * (freq - 0.5) / (freq.std() + 1e-8))
    assert torch.allclose(m, expected)

    pairs = random_pairs(50, 40, 600, seed=1)
    sampler = make(pairs, 40, num_users=50, beta=2.0)
    items = torch.arange(40)
    m = sampler.popularity_mask(items)
    freq = sampler.freq
    above, below = freq > freq.mean() + 1e-6, freq < freq.mean() - 1e-6
    assert above.any() and below.any()
    assert (m[above] < 0.5).all() and (m[below] > 0.5).all()


@pytest.mark.parametrize('num_users,num_items,num_edges,num_candidates,top_k',
                         [(5, 12, 40, 12, 3), (30, 200, 1500, 50, 5),
                          (100, 1500, 20000, 1000, None), (8, 20, 150, 7, 7)])
def test_never_returns_a_training_positive(num_users, num_items, num_edges,
                                           num_candidates, top_k):
    pairs = random_pairs(num_users, num_items, num_edges, seed=2)
    sampler = make(pairs, num_items, num_users=num_users,
                                    num_candidates=num_candidates,
                                    top_k=top_k)
    positives = positive_set(pairs)
    gen = torch.Generator().manual_seed(3)
    item_emb = torch.randn(num_items, 16, generator=gen)
    generated = torch.randn(num_items, 16, generator=gen)
    for _ in range(5):
        batch = torch.randperm(pairs.size(1), generator=gen)[:512]
        users, pos = pairs[:, batch]
        neg = sampler.sample(users, pos, item_emb, generated, gen)
        assert neg.shape == users.shape and neg.dtype == torch.long
        assert neg.min() >= 0 and neg.max() < num_items
        assert not sampler.is_positive(users, neg).any()
        assert not any((u, n) in positives
                       for u, n in zip(users.tolist(), neg.tolist()))
    neg = sampler(users, pos, item_emb, None, gen)  # forward, no generated
    assert not sampler.is_positive(users, neg).any()


@pytest.mark.parametrize('num_candidates', [60, 10, 3])
def test_user_with_all_but_three_items(num_candidates):
    num_items = 60
    free = torch.tensor([7, 31, 58])
    taken = torch.ones(num_items, dtype=torch.bool)
    taken[free] = False
    heavy = torch.stack([torch.zeros(num_items - 3, dtype=torch.long),
                         torch.arange(num_items)[taken]])
    light = torch.tensor([[1, 1, 2], [0, 7, 31]])
    pairs = torch.cat([heavy, light], dim=1)
    sampler = make(pairs, num_items, num_users=3,
                                    num_candidates=num_candidates, top_k=10)
    gen = torch.Generator().manual_seed(4)
    item_emb = torch.randn(num_items, 8, generator=gen)
    users = torch.zeros(300, dtype=torch.long)
    pos = heavy[1][torch.randint(num_items - 3, (300, ), generator=gen)]
    neg = sampler.sample(users, pos, item_emb, torch.randn_like(item_emb),
                         gen)
    assert set(neg.tolist()) == set(free.tolist())  # all three, nothing else
    # Mixed batch: the light users are unaffected and never get positives.
    users = torch.tensor([0, 1, 2, 0, 1, 2])
    pos = torch.tensor([0, 7, 31, 1, 0, 31])
    neg = sampler.sample(users, pos, item_emb, None, gen)
    assert not sampler.is_positive(users, neg).any()


def test_user_with_every_item_raises():
    pairs = torch.stack([torch.zeros(5, dtype=torch.long), torch.arange(5)])
    sampler = make(pairs, 5, num_users=1)
    with pytest.raises(RuntimeError, match='every item'):
        sampler.sample(torch.tensor([0]), torch.tensor([2]), torch.randn(5, 4))


def test_uniform_negatives_are_exact():
    num_items = 10
    pairs = torch.tensor([[0, 0, 0, 0, 1, 2], [0, 1, 3, 9, 5, 0]])
    sampler = make(pairs, num_items, num_users=4)
    gen = torch.Generator().manual_seed(5)
    cases = [(0, [2, 4, 5, 6, 7, 8]), (1, [0, 1, 2, 3, 4, 6, 7, 8, 9]),
             (3, list(range(10)))]
    for user, free in cases:
        neg = sampler.pairs.uniform_negatives(torch.full((6000, ), user),
                                              gen)
        counts = torch.bincount(neg, minlength=num_items)
        assert set(neg.unique().tolist()) == set(free)
        share = counts[free].float() / 6000
        assert torch.allclose(share, torch.full_like(share, 1 / len(free)),
                              atol=0.03)


@pytest.mark.parametrize('with_generated', [True, False])
def test_negative_in_top_k_of_full_pool(with_generated):
    num_users, num_items, k = 6, 25, 4
    pairs = random_pairs(num_users, num_items, 60, seed=6)
    sampler = make(pairs, num_items, num_users=num_users,
                                    num_candidates=num_items, top_k=k)
    gen = torch.Generator().manual_seed(7)
    item_emb = torch.randn(num_items, 8, generator=gen)
    generated = torch.randn(num_items, 8, generator=gen) * 3
    generated = generated if with_generated else None
    users, pos = pairs
    allowed = top_k_sets(sampler, users, pos, item_emb, generated, k)
    assert all(len(a) == k for a in allowed)
    seen = [set() for _ in allowed]
    for _ in range(60):
        neg = sampler.sample(users, pos, item_emb, generated, gen)
        for row, n in enumerate(neg.tolist()):
            assert n in allowed[row]
            seen[row].add(n)
    assert seen == allowed  # each of the k is drawn (uniform over top-k)


def test_fewer_valid_than_k():
    # User 0 has 2 non-positive items, k = 5: draw among those 2 only.
    num_items = 9
    pairs = torch.stack([torch.zeros(7, dtype=torch.long),
                         torch.tensor([0, 1, 2, 4, 5, 6, 8])])
    sampler = make(pairs, num_items, num_users=1,
                                    num_candidates=num_items, top_k=5)
    gen = torch.Generator().manual_seed(8)
    item_emb = torch.randn(num_items, 4, generator=gen)
    neg = sampler.sample(torch.zeros(200, dtype=torch.long),
                         torch.zeros(200, dtype=torch.long), item_emb,
                         item_emb.clone(), gen)
    assert set(neg.tolist()) == {3, 7}


@pytest.mark.parametrize('num_candidates', [1, 7, 40])
def test_pool_positives_equals_lookup(num_candidates):
    num_users, num_items = 12, 40
    pairs = random_pairs(num_users, num_items, 150, seed=9)
    heavy = torch.stack([torch.full((38, ), 3), torch.arange(38)])
    pairs = torch.cat([pairs, heavy], dim=1)  # user 3: all but 2 items
    sampler = make(pairs, num_items, num_users=num_users)
    gen = torch.Generator().manual_seed(10)
    for users in [torch.randint(num_users, (30, ), generator=gen),
                  torch.full((5, ), 3), torch.tensor([11, 3])]:
        cand = torch.randperm(num_items, generator=gen)[:num_candidates]
        expected = sampler.is_positive(users.view(-1, 1), cand.view(1, -1))
        row, slot = sampler.pool_positives(users, cand)
        assert torch.equal(torch.sort(row * num_candidates + slot).values,
                           expected.view(-1).nonzero().view(-1))


@pytest.mark.parametrize('k', [1, 7, 40])
def test_column_at_rank_is_the_sorted_top_k(k):
    gen = torch.Generator().manual_seed(11)
    score = torch.randn(30, 40, generator=gen)
    score[torch.rand(30, 40, generator=gen) < 0.3] = float('-inf')
    score[0] = float('-inf')  # a row of training items only
    top = score.topk(k, dim=1, sorted=True)
    for rank in [torch.zeros(30, dtype=torch.long),
                 torch.full((30, ), k - 1),
                 torch.randint(k, (30, ), generator=gen)]:
        col = column_at_rank(score, rank, k)
        # The value of that rank (which of tied -inf columns is open):
        want = top.values.gather(1, rank.view(-1, 1)).view(-1)
        assert torch.equal(score.gather(1, col.view(-1, 1)).view(-1), want)
        finite = torch.isfinite(want)
        assert torch.equal(col[finite], top.indices.gather(
            1, rank.view(-1, 1)).view(-1)[finite])


def test_popularity_negatives_are_true_and_degree_weighted():
    # Item degrees 0..4 (item i has i users among users 1..4); user 0 owns
    # item 4, so its negatives follow (d + 1)^0.75 over items 0..3.
    pairs = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 4, 1, 2, 3, 4],
                          [4, 1, 2, 2, 3, 3, 4, 4, 3, 4, 4, 2]])
    graph = PairIndex(pairs, 5, 5)
    sampler = PopularityNegativeSampler(graph)
    gen = torch.Generator().manual_seed(0)
    neg = sampler.sample(torch.zeros(20000, dtype=torch.long), gen)
    assert not graph.contains(torch.zeros_like(neg), neg).any()
    weight = (graph.item_degree()[:4].double() + 1).pow(0.75)
    share = torch.bincount(neg, minlength=5)[:4].double() / neg.numel()
    assert torch.allclose(share, weight / weight.sum(), atol=0.015)
    users = torch.randint(5, (3000, ), generator=gen)
    assert not graph.contains(users, sampler(users, gen)).any()
    assert 'exponent=0.75' in repr(sampler)


def test_popularity_negatives_fall_back_to_uniform():
    # User 0 owns the two popular items (almost all the mass): after one
    # rejection round the rest comes from the exact uniform sampler.
    pairs = torch.stack([torch.tensor([0, 0] + [1] * 50 + [2] * 50),
                         torch.tensor([0, 1] + [0] * 50 + [1] * 50)])
    pairs[0, 2:52] = torch.arange(1, 51)
    pairs[0, 52:] = torch.arange(1, 51)
    graph = PairIndex(pairs, 51, 5)
    sampler = PopularityNegativeSampler(graph, exponent=4.0, max_rounds=1)
    neg = sampler.sample(torch.zeros(500, dtype=torch.long),
                         torch.Generator().manual_seed(1))
    assert set(neg.tolist()) == {2, 3, 4}
    with pytest.raises(ValueError, match='smoothing'):
        PopularityNegativeSampler(graph, smoothing=0)
    with pytest.raises(ValueError, match='max_rounds'):
        PopularityNegativeSampler(graph, max_rounds=0)
