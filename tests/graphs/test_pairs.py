import pytest
import torch

from pyg_mmrec.data import make_synthetic, split_edge_index
from pyg_mmrec.graphs import (
    PairIndex,
    interaction_graph,
    split_graph,
    train_graph,
)


def random_edges(num_users, num_items, num_edges, seed=0):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randperm(num_users * num_items, generator=g)[:num_edges]
    return torch.stack([keys // num_items, keys % num_items])


@pytest.mark.parametrize('num_users,num_items,num_edges', [
    (5, 6, 20), (50, 30, 900), (200, 1000, 5000)])
def test_negatives_are_true_negatives(num_users, num_items, num_edges):
    edges = random_edges(num_users, num_items, num_edges)
    index = PairIndex(edges, num_users, num_items)
    user = edges[0].repeat(20)
    neg = index.uniform_negatives(user)
    assert neg.min() >= 0 and neg.max() < num_items
    positives = set(map(tuple, edges.t().tolist()))
    assert not any((u, n) in positives
                   for u, n in zip(user.tolist(), neg.tolist()))


def test_index_structure_and_membership():
    # duplicates collapse; sorted by user then item; CSR pointer per user
    edges = torch.tensor([[2, 0, 0, 1, 2, 0], [3, 3, 1, 0, 3, 1]])
    index = PairIndex(edges, 4, 4)
    assert index.edge_index.tolist() == [[0, 0, 1, 2], [1, 3, 0, 3]]
    assert index.keys.tolist() == [1, 3, 4, 11]
    assert index.ptr.tolist() == [0, 2, 3, 4, 4]
    assert index.user_degree().tolist() == [2, 1, 1, 0]
    assert index.item_degree().tolist() == [1, 1, 0, 2]
    user = torch.arange(4).repeat_interleave(4)
    item = torch.arange(4).repeat(4)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[index.edge_index[0], index.edge_index[1]] = True
    assert torch.equal(index.contains(user, item), expected.view(-1))


def test_negatives_are_uniform_over_the_allowed_items():
    # User 0 has items {0, 2}; its negatives must be uniform over {1, 3, 4};
    # user 1 has none: uniform over all five.
    index = PairIndex(torch.tensor([[0, 0], [0, 2]]), 2, 5)
    gen = torch.Generator().manual_seed(0)
    for user, allowed in ((0, [1, 3, 4]), (1, [0, 1, 2, 3, 4])):
        neg = index.uniform_negatives(torch.full((30000, ), user), gen)
        freq = torch.bincount(neg, minlength=5).float() / neg.numel()
        mask = torch.zeros(5, dtype=torch.bool)
        mask[allowed] = True
        assert freq[~mask].sum() == 0
        assert torch.allclose(freq[mask], torch.full((len(allowed), ),
                                                     1 / len(allowed)),
                              atol=0.02)


def test_user_with_every_item_is_an_error():
    index = PairIndex(torch.tensor([[0, 0, 0], [0, 1, 2]]), 1, 3)
    with pytest.raises(RuntimeError, match='every item'):
        index.uniform_negatives(torch.zeros(4, dtype=torch.long))


def test_train_graph_is_one_shared_training_only_index():
    data = make_synthetic(num_users=60, num_items=40, seed=1)
    graph = train_graph(data)
    assert train_graph(data) is graph  # built once, shared
    assert torch.equal(graph.edge_index, split_edge_index(data, 'train'))
    held = torch.cat([split_edge_index(data, 'val'),
                      split_edge_index(data, 'test')], dim=1)
    assert not graph.contains(held[0], held[1]).any()
    assert split_graph(data, 'val').num_pairs == \
        split_edge_index(data, 'val').size(1)
    # every interaction, all splits: the union of the three split graphs
    every = interaction_graph(data)
    assert interaction_graph(data) is every
    union = torch.cat([split_graph(data, s).edge_index
                       for s in ('train', 'val', 'test')], dim=1)
    assert torch.equal(every.edge_index, PairIndex(union, 60, 40).edge_index)
    # a changed split is a new graph
    store = data['user', 'interacts', 'item']
    store.train_mask = store.train_mask.clone()
    store.train_mask[0] = False
    assert train_graph(data) is not graph
    assert train_graph(data).num_pairs == graph.num_pairs - 1
    with pytest.raises(ValueError, match='split'):
        split_graph(data, 'all')
