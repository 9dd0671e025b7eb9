import pytest
import torch
from sampling_helpers import epoch, power_law_graph
from torch_geometric.loader import LinkNeighborLoader

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.graphs import PairIndex, train_graph
from pyg_mmrec.loader import (
    NeighborSource,
    ReplaceNegatives,
    to_bpr_batch,
)
from pyg_mmrec.loader.neighbor import (
    EDGE_TYPE,
    REV_EDGE_TYPE,
    parse_num_neighbors,
)
from pyg_mmrec.models import LightGCN


def check_batch(graph, batch):
    r"""A mini-batch's invariants: its nodes are in its subgraph, the
    subgraph's edges are training pairs, positives are training pairs and
    negatives never are."""
    sub = batch.subgraph
    assert sub.user_id.unique().numel() == sub.num_users
    assert sub.item_id.unique().numel() == sub.num_items
    u, p, n = batch.node_index()  # raises if a node is missing
    assert torch.equal(sub.user_id[u], batch.user)
    assert torch.equal(sub.item_id[n], batch.neg)
    row, col = sub.edge_index
    assert graph.contains(sub.user_id[row], sub.item_id[col]).all()
    assert graph.contains(batch.user, batch.pos).all()
    assert not graph.contains(batch.user, batch.neg).any()


@pytest.mark.parametrize('negatives', ['uniform', 'popularity'])
def test_an_epoch_covers_every_pair_with_true_negatives(negatives):
    graph = power_law_graph()
    source = NeighborSource(graph, 64, '3,2', negatives=negatives)
    batches = epoch(source)
    assert len(source) == len(batches) == -(-graph.num_pairs // 64)
    for batch in batches:
        check_batch(graph, batch)
    user = torch.cat([b.user for b in batches])
    pos = torch.cat([b.pos for b in batches])
    assert sorted(zip(user.tolist(), pos.tolist())) == sorted(
        map(tuple, graph.edge_index.t().tolist()))
    # The subgraph holds the sampled neighbourhood, not just the triples.
    assert batches[0].subgraph.num_users > batches[0].user.unique().numel()


def test_loader_negatives_are_not_true_negatives_ours_are():
    # A dense graph: the loader's uniform draws often hit positives.
    graph = power_law_graph(num_users=30, num_items=12, num_edges=300)
    loader = torch.cat([b.neg[graph.contains(b.user, b.neg)] for b in
                        epoch(NeighborSource(graph, 32, [2],
                                             negatives='loader'))])
    assert loader.numel() > 0
    for batch in epoch(NeighborSource(graph, 32, [2])):
        check_batch(graph, batch)


def test_popularity_negatives_follow_degrees():
    graph = power_law_graph(num_users=400, num_items=50, num_edges=1500)
    neg = {name: torch.cat([b.neg for b in epoch(
        NeighborSource(graph, 256, [2], negatives=name))])
        for name in ('uniform', 'popularity')}
    degree = graph.item_degree().float()
    head = degree >= degree.median()
    share = {k: head[v].float().mean().item() for k, v in neg.items()}
    assert share['popularity'] > share['uniform'] + 0.1


def test_replaced_negatives_join_the_subgraph_with_their_edges():
    graph = power_law_graph()
    source = NeighborSource(graph, 32, [1])
    torch.manual_seed(0)
    raw = next(iter(LinkNeighborLoader(
        source.data, [1], edge_label_index=(EDGE_TYPE,
                                            graph.edge_index[:, :32]),
        neg_sampling='triplet', batch_size=32,
        neighbor_sampler=source.sampler)))
    old_items = raw['item'].n_id.clone()
    old_edges = {t: raw[t].edge_index.size(1) for t in raw.edge_types}
    # Deterministic true negatives, many of them outside the subgraph.
    user = raw['user'].n_id[raw['user'].src_index]
    far = torch.stack([graph.uniform_negatives(user) for _ in range(50)]
                      ).max(0).values
    batch = ReplaceNegatives(graph, lambda u, p: far)(raw)
    item_id = batch['item'].n_id
    assert torch.equal(item_id[:old_items.numel()], old_items)
    added = item_id[old_items.numel():]
    assert set(added.tolist()) == set(far.tolist()) - set(old_items.tolist())
    assert added.numel() > 0 and batch['item'].num_nodes == item_id.numel()
    assert torch.equal(item_id[batch['item'].dst_neg_index], far)
    # Each added item brings its training edges to the subgraph's users,
    # in both edge types, with their e_id.
    user_id = batch['user'].n_id
    for t in batch.edge_types:
        store = batch[t]
        assert store.e_id.numel() == store.edge_index.size(1)
        row, col = store.edge_index if t == EDGE_TYPE else \
            store.edge_index.flip(0)
        assert torch.equal(graph.edge_index[:, store.e_id],
                           torch.stack([user_id[row], item_id[col]]))
        new_items = col[old_edges[t]:]
        assert (new_items >= old_items.numel()).all()
    fwd = batch[EDGE_TYPE].edge_index[:, old_edges[EDGE_TYPE]:]
    for local, item in enumerate(added.tolist(), start=old_items.numel()):
        users = graph.edge_index[0, graph.edge_index[1] == item]
        expected = set(users[torch.isin(users, user_id)].tolist())
        assert set(user_id[fwd[0, fwd[1] == local]].tolist()) == expected
    check_batch(graph, to_bpr_batch(batch))


def test_an_epoch_is_a_function_of_its_generator():
    source = NeighborSource(power_law_graph(), 100, [3, 3])

    def flat(batches):
        return [torch.cat([b.user, b.pos, b.neg, b.subgraph.user_id,
                           b.subgraph.item_id, b.subgraph.edge_index.view(-1)])
                for b in batches]

    torch.manual_seed(0)
    a = flat(epoch(source, seed=3))
    torch.manual_seed(1)  # the global generator plays no part ...
    state = torch.get_rng_state()
    b = flat(epoch(source, seed=3))
    assert torch.equal(torch.get_rng_state(), state)  # ... nor changes
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = flat(epoch(source, seed=4))
    assert not all(x.shape == y.shape and torch.equal(x, y)
                   for x, y in zip(a, c))


def test_shards_take_the_rounds_of_the_shared_order():
    graph = power_law_graph()
    assert graph.num_pairs % 200 >= 2  # no pair dropped from the last round
    wide = epoch(NeighborSource(graph, 200, [2]))
    shards = [epoch(NeighborSource(graph, 100, [2], shard=(r, 2)))
              for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(wide)
    for j, batch in enumerate(wide):
        pairs = torch.cat([torch.stack([s[j].user, s[j].pos]) for s in shards],
                          dim=1)
        assert torch.equal(pairs, torch.stack([batch.user, batch.pos]))


def test_workers_reproducible():
    source = NeighborSource(power_law_graph(), 200, [2, 2], num_workers=2)
    a, b = epoch(source), epoch(source)
    assert len(a) == len(source) > 1
    for x, y in zip(a, b):
        assert torch.equal(x.neg, y.neg)
        assert torch.equal(x.subgraph.edge_index, y.subgraph.edge_index)


def test_errors():
    graph = power_law_graph()
    with pytest.raises(ValueError, match='num_neighbors'):
        NeighborSource(graph, 10, '10,x')
    with pytest.raises(ValueError, match='num_neighbors'):
        parse_num_neighbors([10, 0])
    assert parse_num_neighbors('10, 5') == [10, 5]
    assert parse_num_neighbors(-1) == [-1]
    with pytest.raises(ValueError, match='negatives'):
        NeighborSource(graph, 10, [2], negatives='hard')
    with pytest.raises(ValueError, match='num_workers'):
        NeighborSource(graph, 10, [2], num_workers=-1)
    assert 'negatives=' in repr(NeighborSource(graph, 10, [2]))


def global_pairs(index, user_id, item_id):
    r"""The global (user, item) pairs of local :obj:`[2, E]` edges."""
    return list(zip(user_id[index[0]].tolist(), item_id[index[1]].tolist()))


def test_replaced_negatives_bring_exactly_their_training_edges():
    """Negatives outside the sampled subgraph whose items have training
    edges to the subgraph's users: the subgraph gains exactly those edges
    (both edge types, each once, with their e_id), nothing else."""
    graph = power_law_graph()
    source = NeighborSource(graph, 16, [1])
    torch.manual_seed(0)
    seeds = graph.edge_index[:, ::50][:, :16]
    raw = next(iter(LinkNeighborLoader(
        source.data, [1], edge_label_index=(EDGE_TYPE, seeds),
        neg_sampling='triplet', batch_size=16,
        neighbor_sampler=source.sampler)))
    user_id, old_items = raw['user'].n_id.clone(), raw['item'].n_id.clone()
    old = {t: global_pairs(raw[t].edge_index if t == EDGE_TYPE else
                           raw[t].edge_index.flip(0), user_id, old_items)
           for t in raw.edge_types}
    # Per row, an item outside the subgraph, not a positive of the row's
    # user, with training edges to other users of the subgraph (cycling
    # through the candidates, so that several items join).
    user = user_id[raw['user'].src_index]
    in_sub = torch.isin(graph.edge_index[0], user_id)
    linked = torch.bincount(graph.edge_index[1, in_sub],
                            minlength=graph.num_items)
    outside = ~torch.isin(torch.arange(graph.num_items), old_items)
    neg = []
    for row, u in enumerate(user.tolist()):
        ok = outside & (linked > 0) & ~graph.contains(
            torch.tensor(u), torch.arange(graph.num_items))
        cand = ok.nonzero().view(-1)
        neg.append(int(cand[row % cand.numel()]))
    neg = torch.tensor(neg)
    batch = ReplaceNegatives(graph, lambda u, p: neg)(raw)
    item_id = batch['item'].n_id
    added = item_id[old_items.numel():]
    assert set(added.tolist()) == set(neg.tolist()) and added.numel() >= 3
    assert torch.equal(item_id[batch['item'].dst_neg_index], neg)
    # The reference, from the training graph: every training edge between
    # an added item and a user of the subgraph.
    eu, ei = graph.edge_index
    keep = torch.isin(ei, added) & torch.isin(eu, user_id)
    expected = sorted(zip(eu[keep].tolist(), ei[keep].tolist()))
    assert len(expected) > added.numel()  # not a comparison of empty sets
    for t in batch.edge_types:
        store = batch[t]
        index = store.edge_index if t == EDGE_TYPE else \
            store.edge_index.flip(0)
        pairs = global_pairs(index, user_id, item_id)
        assert pairs[:len(old[t])] == old[t], t
        assert sorted(pairs[len(old[t]):]) == expected, t
        assert torch.equal(graph.edge_index[:, store.e_id],
                           torch.tensor(pairs).t()), t
    sub = to_bpr_batch(batch).subgraph
    assert sorted(global_pairs(sub.edge_index, sub.user_id, sub.item_id)) == \
        sorted(set(old[EDGE_TYPE]) | set(old[REV_EDGE_TYPE]) | set(expected))
    check_batch(graph, to_bpr_batch(batch))


def test_one_hop_subgraph_holds_the_seeds_edges_in_both_directions():
    """With every neighbour of one hop, a batch's subgraph holds exactly the
    training edges of its seed users (reached through the reverse edges
    only) and of its seed items (through the forward edges), and the
    loader's graph holds the reverse of every training edge."""
    graph = power_law_graph()
    source = NeighborSource(graph, 16, [-1], negatives='loader')
    rev = source.data[REV_EDGE_TYPE].edge_index
    assert torch.equal(rev, source.data[EDGE_TYPE].edge_index.flip(0))
    assert torch.equal(source.data[EDGE_TYPE].edge_index, graph.edge_index)
    eu, ei = graph.edge_index
    through_users = 0
    for batch in epoch(source)[:4]:
        sub = batch.subgraph
        users = batch.user.unique()
        items = torch.cat([batch.pos, batch.neg]).unique()
        of_users, of_items = torch.isin(eu, users), torch.isin(ei, items)
        keep = of_users | of_items
        expected = sorted(zip(eu[keep].tolist(), ei[keep].tolist()))
        assert sorted(global_pairs(sub.edge_index, sub.user_id,
                                   sub.item_id)) == expected
        assert set(sub.user_id.tolist()) == set(
            users.tolist()) | set(eu[of_items].tolist())
        assert set(sub.item_id.tolist()) == set(
            items.tolist()) | set(ei[of_users].tolist())
        through_users += int((of_users & ~of_items).sum())
    assert through_users > 0  # edges only the reverse type brings


def test_a_subgraph_holding_the_whole_graph_propagates_as_the_full_graph():
    """One positive per user as the seeds, one hop of every neighbour: the
    subgraph holds every training edge, most of them brought by the
    reverse edges only (each user's items; the seed items are a few of the
    many items), and LightGCN on it gives the full-graph embeddings of its
    nodes."""
    data = make_synthetic(num_users=30, num_items=150, seed=3)
    graph = train_graph(data)
    first = graph.ptr[:-1][graph.user_degree() > 0]
    seeds = graph.edge_index[:, first]
    source = NeighborSource(graph, seeds.size(1), [-1], negatives='loader')
    (batch, ) = list(source.loader(seeds, seed=0))
    sub = batch.subgraph
    assert sorted(global_pairs(sub.edge_index, sub.user_id, sub.item_id)) \
        == sorted(map(tuple, graph.edge_index.t().tolist()))
    # the seed items' edges alone are not the whole graph
    of_seeds = torch.isin(graph.edge_index[1],
                          torch.cat([batch.pos, batch.neg]))
    assert int(of_seeds.sum()) < graph.num_pairs // 2
    torch.manual_seed(0)
    model = LightGCN(data, embedding_dim=8, num_layers=3)
    with torch.no_grad():
        full_user, full_item = model.encode()
        user, item = model.encode(sub)
    torch.testing.assert_close(user, full_user[sub.user_id])
    torch.testing.assert_close(item, full_item[sub.item_id])


def test_epoch_edges_are_the_only_sampled_neighbourhoods():
    # FREEDOM's rule: each epoch samples from the edges its pruning kept;
    # the positives stay every training pair. With the loader's own
    # negatives no edge is added after sampling, so every subgraph edge is
    # a kept edge, and each epoch reads its own set.
    graph = power_law_graph()
    calls = []

    def kept():
        gen = torch.Generator().manual_seed(len(calls))
        keep = torch.rand(graph.num_pairs, generator=gen) < 0.3
        calls.append(PairIndex(graph.edge_index[:, keep], graph.num_users,
                               graph.num_items))
        return graph.edge_index[:, keep]

    source = NeighborSource(graph, 64, '-1,-1', negatives='loader',
                            epoch_edges=kept)
    for e in (1, 2):
        batches = epoch(source, seed=e, epoch_=e)
        assert len(calls) == e
        sampled = torch.cat([torch.stack([b.subgraph.user_id[
            b.subgraph.edge_index[0]], b.subgraph.item_id[
            b.subgraph.edge_index[1]]]) for b in batches], 1)
        assert calls[-1].contains(sampled[0], sampled[1]).all()
        # all neighbours (-1): the kept edges of the seeds are there
        users = torch.cat([b.user for b in batches]).unique()
        seed_edges = calls[-1].edge_index[:, torch.isin(
            calls[-1].edge_index[0], users)]
        assert PairIndex(sampled, graph.num_users, graph.num_items).contains(
            seed_edges[0], seed_edges[1]).all()
        pos = torch.cat([b.pos for b in batches])
        assert pos.numel() == graph.num_pairs  # every pair a positive


def test_freedom_samples_the_pruned_graph():
    from pyg_mmrec.models import FREEDOM
    from pyg_mmrec.train import build_source
    data = make_synthetic(num_users=60, num_items=40, seed=1)
    model = FREEDOM(data, embedding_dim=8, dropout=0.5)
    source = build_source(model, data, sampler='neighbor', batch_size=64,
                          num_neighbors='-1', negatives='loader')
    model.train()
    model.on_epoch_start(1)
    kept = PairIndex(model.kept_edge_index, model.num_users,
                     model.num_items)
    assert kept.num_pairs < train_graph(data).num_pairs
    for batch in epoch(source):
        sub = batch.subgraph
        assert kept.contains(sub.user_id[sub.edge_index[0]],
                             sub.item_id[sub.edge_index[1]]).all()


def test_replaced_negatives_bring_no_sampled_neighbourhood():
    # The loader samples around the batch's users and positives only: a
    # negative it would discard (triplet mode) must not leave its sampled
    # users in the subgraph. All neighbours, one hop, a sparse graph: the
    # users are the seeds and the positives' users, exactly.
    graph = power_law_graph(num_users=2000, num_items=3000, num_edges=2500)
    source = NeighborSource(graph, 16, '-1', negatives='uniform')
    users_of = {i: set() for i in range(graph.num_items)}
    for u, i in graph.edge_index.t().tolist():
        users_of[i].add(u)
    for batch in epoch(source)[:4]:
        expected = set(batch.user.tolist()).union(
            *(users_of[i] for i in batch.pos.tolist()))
        assert set(batch.subgraph.user_id.tolist()) == expected
