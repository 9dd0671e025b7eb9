"""GeneratedGraphNeighborSource: the training interactions and further
user-item graphs, read once per epoch, as edge types of one sampled graph;
the batches carry the sampled entries with their positions in the graphs'
stored values."""
import pytest
import torch
from sampling_helpers import epoch, power_law_graph

from pyg_mmrec.graphs import generated_adjacency
from pyg_mmrec.loader import (
    GeneratedGraphNeighborSource,
    Subgraph,
    UserItemEntries,
)

U, I = 120, 60  # noqa: E741 (power_law_graph's sizes)


def random_generated(seed, k=2, keep_rate=0.7):
    r"""A generated graph: :obj:`k` random items per user (some users
    none), self-looped and GCN-normalised, entries dropped."""
    gen = torch.Generator().manual_seed(seed)
    items = torch.randint(I, (U, k), generator=gen)
    items[torch.rand(U, generator=gen) < 0.1] = -1
    return generated_adjacency(items, U, I, keep_rate, seed=seed)


def global_entries(sub, index):
    r"""Sampled entries in global node ids (item :math:`i` is
    :math:`U + i`)."""
    nodes = torch.cat([sub.user_id, U + sub.item_id])
    return nodes[index[0]], nodes[index[1]]


def assert_entries_of(adj, sub, name):
    r"""Every sampled entry of :obj:`name` is the stored entry of
    :obj:`adj` at its position, between a user and an item, and none
    repeats."""
    index, position = sub.graph_entries[name]
    row, col = global_entries(sub, index)
    dense = adj.to_dense()
    assert torch.equal(dense[row, col], adj.values()[position])
    assert ((row < U) != (col < U)).all()  # user-item entries only
    crow = adj.crow_indices()
    assert ((position >= crow[row]) & (position < crow[row + 1])).all()
    assert torch.equal(adj.col_indices()[position], col)
    assert position.unique().numel() == position.numel()


def test_user_item_entries_split_the_rows_and_skip_the_diagonal():
    adj = random_generated(0)
    entries = UserItemEntries(adj, U)
    user_rows, item_rows = entries.edge_indices()
    dense = adj.to_dense()
    # (item -> user) edges are the user rows' entries, and vice versa
    assert torch.equal(dense[user_rows[1], U + user_rows[0]],
                       adj.values()[entries.user_rows])
    assert torch.equal(dense[U + item_rows[1], item_rows[0]],
                       adj.values()[entries.item_rows])
    off_diagonal = int((dense != 0).sum() - (dense.diagonal() != 0).sum())
    assert user_rows.size(1) + item_rows.size(1) == off_diagonal
    with pytest.raises(ValueError, match='square CSR'):
        UserItemEntries(adj.to_dense(), U)


@pytest.mark.parametrize('negatives', ['uniform', 'loader'])
def test_sampled_entries_are_entries_of_each_epochs_graphs(negatives):
    graph = power_law_graph()
    calls = []

    def graphs():  # a new pair of graphs each epoch
        calls.append({name: random_generated(10 * len(calls) + j)
                      for j, name in enumerate(('image', 'text'))})
        return calls[-1]

    source = GeneratedGraphNeighborSource(graph, 64, graphs,
                                          num_neighbors='3,2',
                                          negatives=negatives)
    assert calls == []  # nothing read before an epoch's batches
    for e in (1, 2):
        batches = epoch(source, seed=e, epoch_=e)
        assert len(calls) == e
        for batch in batches:
            sub = batch.subgraph
            assert set(sub.graph_entries) == {'image', 'text'}
            for name, adj in calls[-1].items():
                assert_entries_of(adj, sub, name)
            # at most the fan-out of sampled entries per row (appended
            # negatives' rows: their entries to the subgraph's users)
            index, _ = sub.graph_entries['image']
            per_row = torch.bincount(index[0], minlength=sub.num_users +
                                     sub.num_items)[:sub.num_users]
            assert per_row.max() <= 3
        # the epoch's positives are every training pair once
        assert sum(len(b) for b in batches) == graph.num_pairs
    with_entries = [b for b in batches
                    if b.subgraph.graph_entries['text'][0].size(1) > 0]
    assert with_entries
    assert repr(source).endswith("graphs=['image', 'text'])")


def test_all_neighbours_give_every_row_entry_of_the_seeds():
    graph = power_law_graph()
    adj = random_generated(3)
    source = GeneratedGraphNeighborSource(graph, 32, lambda: {'g': adj},
                                          num_neighbors=[-1],
                                          negatives='loader')
    dense = adj.to_dense()
    for batch in epoch(source):
        sub = batch.subgraph
        row, col = global_entries(sub, sub.graph_entries['g'][0])
        seeds = torch.cat([batch.user, U + batch.pos, U + batch.neg]).unique()
        off_diagonal = dense[seeds].clone()
        off_diagonal[torch.arange(seeds.numel()), seeds] = 0
        expected = int((off_diagonal != 0).sum())
        got = int(torch.isin(row, seeds).sum())
        assert got == expected


def test_appended_negatives_get_their_entries_to_the_sampled_users():
    # fan-out 1: many true negatives are appended after sampling; an
    # appended item's row holds its entries to every sampled user, a
    # sampled item's at most one
    graph = power_law_graph()
    adj = random_generated(5, k=4, keep_rate=1.0)
    source = GeneratedGraphNeighborSource(graph, 16, lambda: {'g': adj},
                                          num_neighbors=[1])
    dense = adj.to_dense()
    appended = 0
    for batch in epoch(source):
        sub = batch.subgraph
        assert_entries_of(adj, sub, 'g')
        row, col = global_entries(sub, sub.graph_entries['g'][0])
        for item in batch.neg.unique().tolist():
            got = set(col[row == U + item].tolist())
            users = dense[U + item, :U].nonzero().view(-1)
            expected = set(users[torch.isin(users, sub.user_id)].tolist())
            if got != expected:
                assert len(got) <= 1 and got <= expected
            elif len(got) > 1:
                appended += 1
    assert appended > 0


def test_subgraph_to_moves_the_entries():
    index, position = torch.tensor([[0], [1]]), torch.tensor([3])
    sub = Subgraph(torch.tensor([0]), torch.tensor([0]),
                   torch.tensor([[0], [0]]),
                   graph_entries={'g': (index, position)})
    moved = sub.to('cpu')
    assert torch.equal(moved.graph_entries['g'][1], position)
