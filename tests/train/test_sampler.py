import pytest
import torch

from pyg_mmrec.train.sampler import NegativeSampler, bpr_batches


def random_edges(num_users, num_items, num_edges, seed=0):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randperm(num_users * num_items, generator=g)[:num_edges]
    return torch.stack([keys // num_items, keys % num_items])


@pytest.mark.parametrize('num_users,num_items,num_edges', [
    (5, 6, 20), (50, 30, 900), (200, 1000, 5000)])
def test_negatives_are_true_negatives(num_users, num_items, num_edges):
    edges = random_edges(num_users, num_items, num_edges)
    sampler = NegativeSampler(edges, num_items)
    user = edges[0].repeat(20)
    neg = sampler.sample(user)
    assert neg.min() >= 0 and neg.max() < num_items
    positives = set(map(tuple, edges.t().tolist()))
    assert not any((u, n) in positives for u, n in zip(user.tolist(), neg.tolist()))


def test_is_positive_matches_the_edge_set():
    edges = torch.tensor([[0, 0, 1, 2], [1, 3, 0, 3]])
    sampler = NegativeSampler(edges, num_items=4)
    user = torch.arange(3).repeat_interleave(4)
    item = torch.arange(4).repeat(3)
    expected = torch.zeros(3, 4, dtype=torch.bool)
    expected[edges[0], edges[1]] = True
    assert torch.equal(sampler.is_positive(user, item), expected.view(-1))


def test_negatives_are_uniform_over_the_allowed_items():
    # User 0 has items {0, 1}; its negatives must be uniform over {2, 3, 4}.
    edges = torch.tensor([[0, 0], [0, 1]])
    sampler = NegativeSampler(edges, num_items=5)
    neg = sampler.sample(torch.zeros(30000, dtype=torch.long),
                         torch.Generator().manual_seed(0))
    counts = torch.bincount(neg, minlength=5).float() / neg.numel()
    assert counts[:2].sum() == 0
    assert torch.allclose(counts[2:], torch.full((3,), 1 / 3), atol=0.02)


def test_user_with_every_item_is_an_error():
    edges = torch.tensor([[0, 0, 0], [0, 1, 2]])
    sampler = NegativeSampler(edges, num_items=3, max_rounds=5)
    with pytest.raises(RuntimeError, match='every item'):
        sampler.sample(torch.zeros(4, dtype=torch.long))


def test_bpr_batches_cover_every_training_pair_once():
    edges = random_edges(40, 25, 300)
    sampler = NegativeSampler(edges, 25)
    batches = list(bpr_batches(edges, sampler, batch_size=64))
    assert [b.user.numel() for b in batches] == [64] * 4 + [300 - 256]
    user = torch.cat([b.user for b in batches])
    pos = torch.cat([b.pos for b in batches])
    got = sorted(zip(user.tolist(), pos.tolist()))
    assert got == sorted(map(tuple, edges.t().tolist()))
    neg = torch.cat([b.neg for b in batches])
    assert not sampler.is_positive(user, neg).any()
