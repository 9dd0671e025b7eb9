"""MCLN on sampled subgraphs: :class:`DistinctUserNeighborSource` (the
distinct-user rows of :class:`DistinctUserSource` on LinkNeighborLoader
subgraphs, negatives and intervention items joining them with their
training edges) and the asymmetric self-looped normalisation of a
subgraph with the full graph's degrees. The registry tests
(``test_subgraph_normalisation.py``, ``test_leakage_subgraph.py``) cover
the full-graph equivalence and the leakage rule."""
import pytest
import torch
from sampling_helpers import epoch, power_law_graph
from torch_geometric.loader import LinkNeighborLoader

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.graphs import (
    bipartite_adjacency,
    bipartite_degrees,
    subgraph_adjacency,
    train_graph,
)
from pyg_mmrec.loader import (
    DistinctUserNeighborSource,
    DistinctUserSource,
    Subgraph,
)
from pyg_mmrec.loader.distinct import JoinDistinctUserItems
from pyg_mmrec.loader.neighbor import EDGE_TYPE, REV_EDGE_TYPE
from pyg_mmrec.models import MCLN

#: The graph of most tests.
SMALL = dict(num_users=60, num_items=40, num_edges=500)


def pairs(index, user_id, item_id):
    return list(zip(user_id[index[0]].tolist(), item_id[index[1]].tolist()))


@pytest.mark.parametrize('negatives', ['uniform', 'popularity', 'loader'])
def test_batches_are_distinct_user_rows_on_training_subgraphs(negatives):
    graph = power_law_graph(**SMALL)
    eligible = int((graph.user_degree() > 0).sum())
    source = DistinctUserNeighborSource(graph, 16, [2, 2],
                                        negatives=negatives)
    batches = epoch(source)
    assert len(batches) == len(source) == graph.num_pairs // 16 + 1
    for batch in batches:
        sub = batch.subgraph
        assert len(batch) == 16 and batch.user.unique().numel() == 16
        assert sub.user_id.unique().numel() == sub.num_users
        assert sub.item_id.unique().numel() == sub.num_items
        u, p, n = batch.node_index()
        c = batch.intervention_index()
        assert torch.equal(sub.user_id[u], batch.user)
        assert torch.equal(sub.item_id[p], batch.pos)
        assert torch.equal(sub.item_id[n], batch.neg)
        assert torch.equal(sub.item_id[c], batch.intervention)
        row, col = sub.edge_index
        assert graph.contains(sub.user_id[row], sub.item_id[col]).all()
        assert graph.contains(batch.user, batch.pos).all()
        assert not graph.contains(batch.user, batch.intervention).any()
        if negatives != 'loader':
            assert not graph.contains(batch.user, batch.neg).any()
        # the subgraph holds the sampled neighbourhood, not just the rows
        assert sub.num_users > 16
    # fewer eligible users than the batch size: every one in every batch
    wide = epoch(DistinctUserNeighborSource(graph, 500, [2]))
    assert len(wide) == graph.num_pairs // 500 + 1
    assert all(b.user.unique().numel() == eligible for b in wide)


def test_uniform_rows_are_those_of_the_full_graph_source():
    """Same generator: the same (user, positive, negative, intervention)
    rows as :class:`DistinctUserSource`, step by step, and every epoch of
    the neighbour source is a function of its generator alone."""
    graph = power_law_graph(**SMALL)
    source = DistinctUserNeighborSource(graph, 16, [2, 2])
    full = epoch(DistinctUserSource(graph, 16), seed=3)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    mini = epoch(source, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert len(mini) == len(full)
    for a, b in zip(mini, full):
        for x, y in zip((a.user, a.pos, a.neg, a.intervention),
                        (b.user, b.pos, b.neg, b.intervention)):
            assert torch.equal(x, y)
    torch.manual_seed(1)
    again = epoch(source, seed=3)
    for a, b in zip(mini, again):
        assert torch.equal(a.subgraph.item_id, b.subgraph.item_id)
        assert torch.equal(a.subgraph.edge_index, b.subgraph.edge_index)
    other = epoch(source, seed=4)
    assert not torch.equal(mini[0].user, other[0].user)


def test_shards_take_alternate_steps():
    graph = power_law_graph(**SMALL)
    one = epoch(DistinctUserNeighborSource(graph, 16, [2]))
    shards = [epoch(DistinctUserNeighborSource(graph, 16, [2],
                                               shard=(r, 2)))
              for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == -(-len(one) // 2)
    for step, batch in enumerate(one):
        mine = shards[step % 2][step // 2]
        assert torch.equal(mine.user, batch.user)
        assert torch.equal(mine.intervention, batch.intervention)


def test_workers_reproducible():
    source = DistinctUserNeighborSource(power_law_graph(**SMALL), 16, [2],
                                        num_workers=1)
    a, b = epoch(source), epoch(source)
    assert len(a) == len(source)
    for x, y in zip(a, b):
        assert torch.equal(x.intervention, y.intervention)
        assert torch.equal(x.subgraph.edge_index, y.subgraph.edge_index)


def outside_true_negatives(graph, user, user_id, item_id, offset):
    r"""Per row, an item outside the subgraph, not an item of the row's
    user, with training edges to users of the subgraph (cycling through the
    candidates, so that several distinct items join)."""
    linked = torch.bincount(
        graph.edge_index[1, torch.isin(graph.edge_index[0], user_id)],
        minlength=graph.num_items)
    outside = ~torch.isin(torch.arange(graph.num_items), item_id)
    out = []
    for row, u in enumerate(user.tolist()):
        ok = outside & (linked > 0) & ~graph.contains(
            torch.tensor(u), torch.arange(graph.num_items))
        cand = ok.nonzero().view(-1)
        out.append(int(cand[(row + offset) % cand.numel()]))
    return torch.tensor(out)


def test_intervention_items_join_with_exactly_their_training_edges():
    """Negatives and intervention items outside the sampled subgraph join
    it with every training edge to the subgraph's users (both edge types,
    with their e_id) and no other edge; the batch carries them."""
    graph = power_law_graph(**SMALL)
    source = DistinctUserNeighborSource(graph, 16, [1])
    torch.manual_seed(0)
    seeds = graph.edge_index[:, ::25][:, :16]
    raw = next(iter(LinkNeighborLoader(
        source.data, [1], edge_label_index=(EDGE_TYPE, seeds),
        neg_sampling='triplet', batch_size=16,
        neighbor_sampler=source.sampler)))
    user_id, old_items = raw['user'].n_id.clone(), raw['item'].n_id.clone()
    old = {t: pairs(raw[t].edge_index if t == EDGE_TYPE else
                    raw[t].edge_index.flip(0), user_id, old_items)
           for t in raw.edge_types}
    user = user_id[raw['user'].src_index]
    neg = outside_true_negatives(graph, user, user_id, old_items, 0)
    intervention = outside_true_negatives(graph, user, user_id, old_items, 5)
    batch = JoinDistinctUserItems(source.join, neg, intervention)(raw)
    sub = batch.subgraph
    added = sub.item_id[old_items.numel():]
    assert set(added.tolist()) == set(neg.tolist()) | set(
        intervention.tolist())
    assert not set(intervention.tolist()) <= set(neg.tolist())
    assert torch.equal(batch.intervention, intervention)
    assert torch.equal(batch.neg, neg)
    assert torch.equal(sub.item_id[batch.intervention_index()],
                       intervention)
    eu, ei = graph.edge_index
    keep = torch.isin(ei, added) & torch.isin(eu, user_id)
    expected = sorted(zip(eu[keep].tolist(), ei[keep].tolist()))
    assert len(expected) > added.numel()
    item_id = raw['item'].n_id
    for t in raw.edge_types:
        store = raw[t]
        index = store.edge_index if t == EDGE_TYPE else \
            store.edge_index.flip(0)
        got = pairs(index, user_id, item_id)
        assert got[:len(old[t])] == old[t], t
        assert sorted(got[len(old[t]):]) == expected, t
        assert torch.equal(graph.edge_index[:, store.e_id],
                           torch.tensor(got).t()), t
    assert sorted(pairs(sub.edge_index, sub.user_id, sub.item_id)) == \
        sorted(set(old[EDGE_TYPE]) | set(old[REV_EDGE_TYPE]) |
               set(expected))


def test_one_hop_subgraph_is_the_seeds_edges_plus_the_joined_items():
    """Every neighbour of one hop, the loader's negatives kept (so every
    seed is known): the subgraph's edges are exactly those of the seed
    users and seed items, plus the training edges between the subgraph's
    users and the intervention items outside the sampled part."""
    graph = power_law_graph(**SMALL)
    eu, ei = graph.edge_index
    source = DistinctUserNeighborSource(graph, 12, [-1], negatives='loader')
    joined = 0
    for batch in epoch(source)[:4]:
        users = batch.user.unique()
        seeds = torch.cat([batch.pos, batch.neg]).unique()
        of_users, of_seeds = torch.isin(eu, users), torch.isin(ei, seeds)
        sampled_users = torch.cat([users, eu[of_seeds]]).unique()
        sampled_items = torch.cat([seeds, ei[of_users]]).unique()
        extra = batch.intervention[~torch.isin(batch.intervention,
                                               sampled_items)]
        to_extra = torch.isin(ei, extra) & torch.isin(eu, sampled_users)
        keep = of_users | of_seeds | to_extra
        sub = batch.subgraph
        assert sorted(pairs(sub.edge_index, sub.user_id, sub.item_id)) == \
            sorted(zip(eu[keep].tolist(), ei[keep].tolist()))
        assert set(sub.user_id.tolist()) == set(sampled_users.tolist())
        assert set(sub.item_id.tolist()) == set(
            sampled_items.tolist()) | set(extra.tolist())
        joined += int(to_extra.sum())
    assert joined > 0


@pytest.mark.parametrize('exponents', [(-0.5, -0.4), (-1.0, 0.0)])
def test_asymmetric_subgraph_normalisation_matches_a_dense_reference(
        exponents):
    graph = power_law_graph(**SMALL)
    degrees = bipartite_degrees(graph.edge_index, graph.num_users,
                                graph.num_items)
    gen = torch.Generator().manual_seed(0)
    users = torch.randperm(graph.num_users, generator=gen)[:25]
    items = torch.randperm(graph.num_items, generator=gen)[:30]
    sub = Subgraph.induced(graph, users, items)
    adj = subgraph_adjacency(sub, degrees, normalization='asym',
                             exponents=exponents, self_loops=True)
    # Reference: local (A + I) with the global degrees + 1 (self-loop).
    n = sub.num_users + sub.num_items
    dense = torch.eye(n)
    row, col = sub.edge_index
    dense[row, sub.num_users + col] = 1.0
    dense[sub.num_users + col, row] = 1.0
    deg = torch.cat([degrees[0][users], degrees[1][items]]) + 1
    a, b = exponents
    expected = deg.pow(a)[:, None] * dense * deg.pow(b)[None, :]
    assert torch.allclose(adj.to_dense(), expected, atol=1e-7)
    assert (sub.edge_index.size(1) > 0 and
            not torch.allclose(deg - 1, torch.cat([
                torch.bincount(row, minlength=sub.num_users),
                torch.bincount(col, minlength=sub.num_items)]).float()))
    # The whole graph as a subgraph: the full graph's adjacency.
    whole = Subgraph.induced(graph, torch.arange(graph.num_users),
                             torch.arange(graph.num_items))
    full = bipartite_adjacency(graph.edge_index, graph.num_users,
                               graph.num_items, 'asym', self_loops=True,
                               exponents=exponents)
    assert torch.allclose(subgraph_adjacency(
        whole, degrees, normalization='asym', exponents=exponents,
        self_loops=True).to_dense(), full.to_dense())


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=70, num_items=50, seed=2)


def shuffled_whole_graph(data):
    graph = train_graph(data)
    gen = torch.Generator().manual_seed(5)
    return Subgraph.induced(graph, torch.randperm(graph.num_users,
                                                  generator=gen),
                            torch.randperm(graph.num_items, generator=gen))


@pytest.mark.parametrize('scoring', ['chunks', 'diagonal'])
def test_the_whole_graph_in_any_local_order_gives_the_full_model(data,
                                                                 scoring):
    """Local positions (intervention items included) and the chunks of
    :meth:`MCLN.encode`: a shuffled whole-graph subgraph gives the full
    loss terms and the full rows, permuted."""
    torch.manual_seed(0)
    model = MCLN(data, embedding_dim=8, num_layers=2, num_blocks=1,
                 scoring=scoring, chunk_size=7)
    sub = shuffled_whole_graph(data)
    batch = next(iter(model.batch_source(train_graph(data), 24).batches(
        1, torch.Generator().manual_seed(0))))
    full, local = model(batch), model(batch.with_subgraph(sub))
    for key in full:
        assert torch.allclose(local[key], full[key], atol=1e-6), key
    with torch.no_grad():
        user, item = model.encode()
        sub_user, sub_item = model.encode(sub)
    assert torch.allclose(sub_user, user[sub.user_id], atol=1e-6)
    assert torch.allclose(sub_item, item[sub.item_id], atol=1e-6)
    # A part of the graph: every item attends within the members of its
    # chunk that are in the subgraph.
    part = Subgraph.induced(train_graph(data), sub.user_id,
                            sub.item_id[:20])
    with torch.no_grad():
        _, i_g, feats = model._propagate(part)
        q = torch.cat([i_g] + feats, dim=1)
        m = model.encode(part)[1][:, -8:]
        chunk_of = torch.empty_like(model.chunk_order)
        chunk_of[model.chunk_order] = torch.arange(50) // 7
        c = chunk_of[part.item_id]
        rows = (c == c[0]).nonzero().view(-1)
        expected = model.counterfactual.positive(
            q[rows], None if scoring == 'diagonal' else q[rows],
            diagonal=scoring == 'diagonal')
    assert rows.numel() > 1
    assert torch.allclose(m[rows], expected, atol=1e-6)
