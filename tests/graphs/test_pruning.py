import pytest
import torch

from pyg_mmrec.graphs import (
    bipartite_adjacency,
    csr_to_edge_index,
    degree_sensitive_edges,
    degree_sensitive_pruning,
    pruning_weights,
    sample_without_replacement,
    unique_pairs,
)


def random_pairs(num_users, num_items, num_edges, seed):
    gen = torch.Generator().manual_seed(seed)
    user = torch.randint(num_users, (num_edges, ), generator=gen)
    item = torch.randint(num_items, (num_edges, ), generator=gen)
    return unique_pairs(torch.stack([user, item]), num_users, num_items)


def kept_pairs(adj, num_users):
    # The (user, item) pairs of the user rows of a pruned adjacency.
    edge_index, value = csr_to_edge_index(adj)
    mask = edge_index[0] < num_users
    return edge_index[:, mask] - torch.tensor([[0], [num_users]]), value[mask]


@pytest.mark.parametrize('keep_ratio', [0.0, 0.2, 0.5, 1.0])
def test_pruning_keeps_int_e_keep_distinct_edges(keep_ratio):
    num_users, num_items = 40, 30
    pairs = random_pairs(num_users, num_items, 400, seed=0)
    num_edges = pairs.size(1)
    gen = torch.Generator().manual_seed(1)
    adj = degree_sensitive_pruning(pairs, num_users, num_items, keep_ratio,
                                   generator=gen)
    assert adj.layout == torch.sparse_csr
    assert adj.shape == (num_users + num_items, num_users + num_items)
    kept, value = kept_pairs(adj, num_users)
    assert kept.size(1) == int(num_edges * keep_ratio)
    # Distinct and a subset of the training pairs:
    key = kept[0] * num_items + kept[1]
    assert key.unique().numel() == key.numel()
    assert bool(torch.isin(key, pairs[0] * num_items + pairs[1]).all())
    # Symmetric, no self-loops, re-normalised on the kept edges:
    dense = adj.to_dense()
    assert torch.equal(dense, dense.t())
    assert bool((dense.diagonal() == 0).all())
    if kept.size(1) > 0:
        deg_u = torch.bincount(kept[0], minlength=num_users).float()
        deg_i = torch.bincount(kept[1], minlength=num_items).float()
        expected = 1 / (deg_u[kept[0]] * deg_i[kept[1]]).sqrt()
        assert torch.allclose(value, expected)
        ref = bipartite_adjacency(kept, num_users, num_items)
        assert torch.allclose(ref.to_dense(), dense)


def test_pruned_edges_are_those_of_the_pruned_adjacency():
    pairs = random_pairs(50, 40, 500, seed=3)
    gen = torch.Generator().manual_seed(5)
    adj = degree_sensitive_pruning(pairs, 50, 40, 0.3, generator=gen)
    gen = torch.Generator().manual_seed(5)
    edges = degree_sensitive_edges(pairs, 50, 40, 0.3, generator=gen)
    assert edges.size(1) == int(pairs.size(1) * 0.3)
    assert torch.equal(edges, kept_pairs(adj, 50)[0])  # sorted, same draws


def test_pruning_generator_reproducible():
    pairs = random_pairs(50, 40, 500, seed=2)
    out = []
    for seed in (7, 7, 8):
        gen = torch.Generator().manual_seed(seed)
        adj = degree_sensitive_pruning(pairs, 50, 40, 0.3, generator=gen)
        out.append(kept_pairs(adj, 50)[0])
    assert torch.equal(out[0], out[1])
    assert not torch.equal(out[0], out[2])


def test_pruning_weights_and_precomputed():
    pairs = torch.tensor([[0, 0, 1, 2], [0, 1, 1, 1]])
    weight = pruning_weights(pairs, 3, 2)
    # deg u = (2, 1, 1), deg i = (1, 3)
    expected = torch.tensor([1 / 2**0.5, 1 / 6**0.5, 1 / 3**0.5, 1 / 3**0.5])
    assert torch.allclose(weight, expected)
    a = degree_sensitive_pruning(pairs, 3, 2, 0.5,
                                 generator=torch.Generator().manual_seed(0))
    b = degree_sensitive_pruning(pairs, 3, 2, 0.5, edge_weight=weight,
                                 generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.to_dense(), b.to_dense())
    with pytest.raises(ValueError, match='unique edges'):
        degree_sensitive_pruning(pairs, 3, 2, 0.5, edge_weight=weight[:2])
    with pytest.raises(ValueError, match='keep_ratio'):
        degree_sensitive_pruning(pairs, 3, 2, 1.5)


def test_low_weight_edges_are_kept_less_often():
    # A star: user 0 is linked to every item (low weights); users 1..20 have
    # one private item each (high weights, 1 / sqrt(1 * 1)).
    num_private = 20
    num_items = 40
    hub = torch.stack([torch.zeros(num_items, dtype=torch.long),
                       torch.arange(num_items)])
    private_items = torch.arange(num_items, num_items + num_private)
    private = torch.stack([torch.arange(1, num_private + 1), private_items])
    pairs = torch.cat([hub, private], dim=1)
    num_users, total_items = num_private + 1, num_items + num_private
    gen = torch.Generator().manual_seed(0)
    hub_kept = private_kept = 0
    for _ in range(100):
        adj = degree_sensitive_pruning(pairs, num_users, total_items, 0.25,
                                       generator=gen)
        kept, _ = kept_pairs(adj, num_users)
        hub_kept += int((kept[0] == 0).sum())
        private_kept += int((kept[0] > 0).sum())
    # Per-edge keep rates: hub edges weigh 1/sqrt(40), private ones 1.
    hub_rate = hub_kept / (100 * num_items)
    private_rate = private_kept / (100 * num_private)
    assert private_rate > 3 * hub_rate


def test_sample_without_replacement_matches_multinomial():
    # Inclusion frequencies of Gumbel-top-k match torch.multinomial's.
    weight = torch.tensor([1.0, 2.0, 4.0, 8.0, 0.0, 1.0])
    gen = torch.Generator().manual_seed(0)
    trials, k = 4000, 3
    ours = torch.zeros(6)
    ref = torch.zeros(6)
    for _ in range(trials):
        idx = sample_without_replacement(weight, k, generator=gen)
        assert idx.unique().numel() == k
        ours[idx] += 1
        ref[torch.multinomial(weight, k, generator=gen)] += 1
    assert ours[4] == 0
    assert torch.allclose(ours / trials, ref / trials, atol=0.04)
    with pytest.raises(ValueError, match='without replacement'):
        sample_without_replacement(weight, 7)
    with pytest.raises(ValueError, match='non-negative'):
        sample_without_replacement(-weight, 2)
