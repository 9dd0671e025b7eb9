import pytest
import torch

from pyg_mmrec.graphs import PairIndex
from pyg_mmrec.loader import (
    BPRBatch,
    DistinctUserSource,
    RowBlockSource,
    Subgraph,
    TripletSource,
    shard_slices,
)


def random_graph(num_users=40, num_items=25, num_edges=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randperm(num_users * num_items, generator=g)[:num_edges]
    return PairIndex(torch.stack([keys // num_items, keys % num_items]),
                     num_users, num_items)


def test_triplets_cover_every_training_pair_once_with_true_negatives():
    graph = random_graph()
    source = TripletSource(graph, batch_size=64)
    batches = list(source.batches(1, torch.Generator().manual_seed(0)))
    assert len(source) == len(batches) == 5
    assert [len(b) for b in batches] == [64] * 4 + [300 - 256]
    user = torch.cat([b.user for b in batches])
    pos = torch.cat([b.pos for b in batches])
    got = sorted(zip(user.tolist(), pos.tolist()))
    assert got == sorted(map(tuple, graph.edge_index.t().tolist()))
    neg = torch.cat([b.neg for b in batches])
    assert not graph.contains(user, neg).any()


def test_an_epoch_is_a_function_of_its_generator():
    source = TripletSource(random_graph(), batch_size=50)

    def epoch(seed):
        batches = source.batches(1, torch.Generator().manual_seed(seed))
        return torch.cat([torch.stack([b.user, b.pos, b.neg])
                          for b in batches], 1)

    torch.manual_seed(0)
    a = epoch(3)
    torch.manual_seed(1)  # the global generator plays no part
    assert torch.equal(a, epoch(3))
    assert not torch.equal(a, epoch(4))


def test_shards_partition_the_shared_order():
    graph = random_graph()  # 300 pairs: 3 rounds of 3 x 32, 12 left over
    wide = list(TripletSource(graph, 96).batches(
        1, torch.Generator().manual_seed(0)))
    shards = [list(TripletSource(graph, 32, shard=(r, 3)).batches(
        1, torch.Generator().manual_seed(0))) for r in range(3)]
    # Every process takes as many steps (DDP needs it): 3 full, then 4 of
    # the 12 left over.
    assert [len(s) for s in shards] == [len(TripletSource(
        graph, 32, shard=(r, 3))) for r in range(3)] == [4, 4, 4]
    assert [len(b) for b in shards[2]] == [32, 32, 32, 4]
    # Round j of the 3 processes is batch j of one process at 3 x 32.
    for j, batch in enumerate(wide):
        for field in ('user', 'pos', 'neg'):
            assert torch.equal(getattr(batch, field), torch.cat(
                [getattr(s[j], field) for s in shards]))
    with pytest.raises(ValueError, match='shard'):
        TripletSource(graph, 32, shard=(3, 3))
    with pytest.raises(ValueError, match='batch_size'):
        TripletSource(graph, 0)


@pytest.mark.parametrize('num,size,world', [(10, 2, 2), (10, 3, 4),
                                            (7, 10, 3), (2, 1, 3),
                                            (96, 32, 3)])
def test_shard_slices(num, size, world):
    parts = [shard_slices(num, size, r, world) for r in range(world)]
    assert len({len(p) for p in parts}) == 1  # the same number of steps
    taken = sorted(i for p in parts for sl in p for i in range(num)[sl])
    assert len(taken) == len(set(taken))  # disjoint
    assert len(taken) >= num - world + 1  # at most world - 1 dropped
    assert all(0 < sl.stop - sl.start <= size for p in parts for sl in p)
    # Step j of all processes is batch j of one process at size x world
    # (whose last batch the processes drop if it has fewer than world).
    rounds = [(min(p[j].start for p in parts), max(p[j].stop for p in parts))
              for j in range(len(parts[0]))]
    single = [(sl.start, sl.stop) for sl in shard_slices(num, size * world)]
    dropped = 0 < num % (size * world) < world
    assert rounds == (single[:-1] if dropped else single)


def test_distinct_user_shards_take_turns():
    graph = random_graph()
    one = list(DistinctUserSource(graph, 16).batches(
        1, torch.Generator().manual_seed(0)))
    two = [list(DistinctUserSource(graph, 16, shard=(r, 2)).batches(
        1, torch.Generator().manual_seed(0))) for r in range(2)]
    assert len(two[0]) == len(two[1]) == -(-len(one) // 2)
    for j, batch in enumerate(one):
        assert torch.equal(batch.user, two[j % 2][j // 2].user)


def test_row_blocks_cover_every_row_once():
    source = RowBlockSource(10, 4)
    blocks = list(source.batches(1, torch.Generator().manual_seed(0)))
    assert len(source) == 3 and [b.numel() for b in blocks] == [4, 4, 2]
    assert sorted(torch.cat(blocks).tolist()) == list(range(10))


@pytest.mark.parametrize('num_rows', [17, 16, 9])
def test_row_block_shards_are_the_parts_of_one_process_blocks(num_rows):
    # Two processes at block 4 take the halves of one process's blocks of 8
    # (the same order); the last, incomplete round is split near-equally,
    # or dropped with fewer rows than processes (17 and 9 rows: one row).
    def blocks(source):
        return list(source.batches(1, torch.Generator().manual_seed(3)))

    one = blocks(RowBlockSource(num_rows, 8))
    parts = [blocks(RowBlockSource(num_rows, 4).with_shard(r, 2))
             for r in range(2)]
    dropped = int(num_rows % 8 == 1)
    assert len(parts[0]) == len(parts[1]) == len(one) - dropped
    assert len(RowBlockSource(num_rows, 4, shard=(1, 2))) == len(parts[0])
    for j, block in enumerate(one[:len(parts[0])]):
        assert torch.equal(torch.cat([parts[0][j], parts[1][j]]), block)
        assert abs(parts[0][j].numel() - parts[1][j].numel()) <= 1
    with pytest.raises(ValueError, match='shard'):
        RowBlockSource(10, 4, shard=(2, 2))


def test_subgraph_induced_and_local_node_index():
    graph = PairIndex(torch.tensor([[0, 0, 1, 2, 2], [0, 2, 1, 1, 3]]), 3, 4)
    sub = Subgraph.induced(graph, torch.tensor([2, 0]),
                           torch.tensor([1, 0, 3]))
    # pairs between users {2, 0} and items {1, 0, 3}: (0,0), (2,1), (2,3)
    assert sorted(map(tuple, sub.edge_index.t().tolist())) == \
        [(0, 0), (0, 2), (1, 1)]
    batch = BPRBatch(torch.tensor([0, 2]), torch.tensor([0, 3]),
                     torch.tensor([3, 0]))
    assert [t.tolist() for t in batch.node_index()] == \
        [[0, 2], [0, 3], [3, 0]]
    u, p, n = batch.with_subgraph(sub).node_index()
    assert (u.tolist(), p.tolist(), n.tolist()) == ([1, 0], [1, 2], [2, 1])
    with pytest.raises(ValueError, match='lacks'):
        BPRBatch(torch.tensor([1]), torch.tensor([0]),
                 torch.tensor([0])).with_subgraph(sub).node_index()


def test_distinct_user_batches_follow_mcln_sampling_rules():
    graph = random_graph(num_users=40, num_items=25, num_edges=300)
    # a user without training items is never drawn
    keep = graph.edge_index[0] != 7
    graph = PairIndex(graph.edge_index[:, keep], 40, 25)
    source = DistinctUserSource(graph, batch_size=16)
    batches = list(source.batches(1, torch.Generator().manual_seed(0)))
    assert len(source) == len(batches) == graph.num_pairs // 16 + 1
    drawn = torch.zeros(40, dtype=torch.long)
    for b in batches:
        assert len(b) == 16 and b.user.unique().numel() == 16  # distinct
        assert graph.contains(b.user, b.pos).all()  # training positives
        assert not graph.contains(b.user, b.neg).any()  # true negatives
        assert not graph.contains(b.user, b.intervention).any()
        drawn += torch.bincount(b.user, minlength=40)
    assert drawn[7] == 0 and (drawn[graph.user_degree() > 0] > 0).all()
    # the intervention items are drawn independently of the negatives
    neg = torch.cat([b.neg for b in batches])
    inter = torch.cat([b.intervention for b in batches])
    assert (neg != inter).float().mean() > 0.5
    # every positive of a user is reachable: the draws cover user 0's items
    pos0 = torch.cat([b.pos[b.user == 0] for b in batches[:1]] + [
        b.pos[b.user == 0] for b in source.batches(
            2, torch.Generator().manual_seed(1))])
    items0 = graph.edge_index[1, graph.edge_index[0] == 0]
    assert set(pos0.tolist()) <= set(items0.tolist())
    # fewer eligible users than the batch size: every one of them per batch
    small = DistinctUserSource(graph, batch_size=1000)
    b = next(iter(small.batches(1, torch.Generator().manual_seed(0))))
    assert len(b) == 39 and b.to('cpu').intervention is not None


def test_distinct_draw_is_a_uniform_sample_without_replacement():
    from pyg_mmrec.loader.sources import distinct_draw
    gen = torch.Generator().manual_seed(0)
    # dense case: the permutation's prefix, as before
    state = gen.get_state()
    dense = distinct_draw(40, 10, gen)
    gen.set_state(state)
    assert torch.equal(dense, torch.randperm(40, generator=gen)[:10])
    # sparse case: distinct, every value and every first position equally
    # likely (4,000 draws of 5 of 100: 200 expected hits per value, 40 per
    # value at position 0)
    n, k, trials = 100, 5, 4000
    draws = torch.stack([distinct_draw(n, k, gen) for _ in range(trials)])
    assert all(row.unique().numel() == k for row in draws)
    assert int(draws.min()) >= 0 and int(draws.max()) < n
    hits = torch.bincount(draws.view(-1), minlength=n).double()
    chi2 = ((hits - trials * k / n) ** 2 / (trials * k / n)).sum()
    assert chi2 < 160  # 99 degrees of freedom: p < 1e-5 beyond
    first = torch.bincount(draws[:, 0], minlength=n).double()
    chi2 = ((first - trials / n) ** 2 / (trials / n)).sum()
    assert chi2 < 160
