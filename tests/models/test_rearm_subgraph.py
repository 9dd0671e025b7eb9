"""REARM on sampled subgraphs: the heterogeneous neighbour source over the
interactions and the homography graphs, and the homography on a subgraph
(its sampled entries with the full graphs' weights, or its nodes' whole
rows)."""
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.loader import RelationNeighborSource, Subgraph
from pyg_mmrec.models import MODELS


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=90, num_items=60, seed=2)


def build(data, **kwargs):
    torch.manual_seed(0)
    return MODELS['rearm'](data, embedding_dim=8, user_knn_k=6,
                           item_knn_k=4, **kwargs)


def full_homography(model, side):
    r"""Dense reference: :math:`\mathbf{G}^{h} [\mathbf{E} \| \ldots]`,
    rows L2-normalised, :obj:`[n, 3d]`."""
    adj = (model.user_graph if side == 'user' else model.item_graph)
    hops = model.num_user_hops if side == 'user' else model.num_item_hops
    n = adj.size(0)
    x = model._inputs(side, torch.arange(n))
    for _ in range(hops):
        x = adj.to_dense() @ x
    return F.normalize(x, dim=1)


def entries(adj):
    crow, col = adj.crow_indices(), adj.col_indices()
    row = torch.arange(adj.size(0)).repeat_interleave(crow[1:] - crow[:-1])
    return torch.stack([row, col])


def first_batch(model, data, fanout='3,3', negatives='uniform',
                batch_size=64):
    source = model.neighbor_source(train_graph(data), batch_size,
                                   num_neighbors=fanout, negatives=negatives)
    assert isinstance(source, RelationNeighborSource)
    return next(iter(source.batches(1, torch.Generator().manual_seed(3))))


def test_sampled_entries_are_entries_of_the_built_graphs(data):
    model = build(data, homography_neighbors={'user': 3, 'item': 2})
    batch = first_batch(model, data)
    sub = batch.subgraph
    for side, ids, fanout in (('user', sub.user_id, 3),
                              ('item', sub.item_id, 2)):
        adj = model.user_graph if side == 'user' else model.item_graph
        index = getattr(sub, f'{side}_edge_index')
        edge_id = getattr(sub, f'{side}_edge_id')
        assert index is not None and index.size(1) > 0
        dense = adj.to_dense()
        # entry (i, j) of the subgraph is entry (id[i], id[j]) of the graph,
        # with its weight at its edge id, and none repeats
        assert torch.equal(dense[ids[index[0]], ids[index[1]]],
                           adj.values()[edge_id])
        assert (adj.values()[edge_id] != 0).all()
        assert torch.equal(entries(adj)[:, edge_id],
                           torch.stack([ids[index[0]], ids[index[1]]]))
        assert edge_id.unique().numel() == edge_id.numel()
        # at most the fan-out per node, and some node reaches it
        per_node = torch.bincount(index[0], minlength=ids.numel())
        assert per_node.max() == fanout


def test_appended_true_negatives_get_their_item_graph_entries(data):
    # small batches and fan-outs: many true negatives are not sampled nodes
    # (appended after sampling by ReplaceNegatives) or were reached at the
    # last hop only; each has min(fan-out, row size) entries of its row
    model = build(data, homography_neighbors={'user': 1, 'item': 2})
    source = model.neighbor_source(train_graph(data), 4, num_neighbors='1')
    row_size = model.item_graph.crow_indices().diff()
    appended = 0
    for batch in source.batches(1, torch.Generator().manual_seed(0)):
        sub = batch.subgraph
        _, _, neg = batch.node_index()
        rows = torch.bincount(sub.item_edge_index[0],
                              minlength=sub.num_items)
        assert torch.equal(rows[neg], row_size[batch.neg].clamp(max=2))
        # the negatives' own user-item edges: to the batch's users only
        # (ReplaceNegatives) for the appended ones
        appended += int((~torch.isin(neg, sub.edge_index[1])).sum())
    assert appended > 0


def test_fully_sampled_nodes_aggregate_as_on_the_full_graph(data):
    model = build(data, homography_neighbors=-1).eval()
    sub = first_batch(model, data, fanout='1', batch_size=2).subgraph
    for side, ids in (('user', sub.user_id), ('item', sub.item_id)):
        adj = model.user_graph if side == 'user' else model.item_graph
        index = getattr(sub, f'{side}_edge_index')
        full = torch.bincount(index[0], minlength=ids.numel()) == \
            adj.crow_indices().diff()[ids]
        # some nodes got their whole row, others (the last hop's) none
        assert full.any() and not full.all()
        with torch.no_grad():
            out = torch.cat(model.subgraph_homography(side, sub), dim=1)
            ref = full_homography(model, side)[ids]
        assert torch.allclose(out[full], ref[full], atol=1e-6)


@pytest.mark.parametrize('hops', [1, 2])
def test_a_subgraph_without_entries_reads_whole_rows(data, hops):
    model = build(data, num_user_hops=hops, num_item_hops=hops).eval()
    sub = Subgraph.induced(train_graph(data), torch.tensor([5, 0, 40, 7]),
                           torch.tensor([3, 59, 11]))
    with torch.no_grad():
        for side, ids in (('user', sub.user_id), ('item', sub.item_id)):
            out = torch.cat(model.subgraph_homography(side, sub), dim=1)
            assert torch.allclose(out, full_homography(model, side)[ids],
                                  atol=1e-6)


def test_the_whole_graph_with_all_entries_gives_the_full_losses(data):
    model = build(data).train()
    graph = train_graph(data)
    whole = Subgraph.induced(graph, torch.arange(graph.num_users),
                             torch.arange(graph.num_items))
    # every entry of both graphs as sampled entries (not the whole-row
    # fallback), in a shuffled order
    fields = {}
    for side, adj in (('user', model.user_graph), ('item', model.item_graph)):
        perm = torch.randperm(adj.values().numel())
        fields[f'{side}_edge_index'] = entries(adj)[:, perm]
        fields[f'{side}_edge_id'] = perm
    whole = replace(whole, **fields)
    batch = next(iter(model.batch_source(graph, 32).batches(
        1, torch.Generator().manual_seed(1))))
    state = torch.get_rng_state()
    full = model(batch)
    torch.set_rng_state(state)
    sub = model(batch.with_subgraph(whole))
    assert full.keys() == sub.keys() == {'bpr', 'cl', 'diff'}
    for key in full:
        assert torch.allclose(full[key], sub[key], rtol=1e-5, atol=1e-7)


def test_evaluation_uses_every_nodes_meta_means_and_training_the_subgraphs(
        data):
    model = build(data, num_layers=1)  # one hop: the users' whole one
    graph = train_graph(data)
    sub = Subgraph.induced(graph, torch.arange(0, 90, 4), torch.arange(60))
    model.eval()
    with torch.no_grad():
        full_user, _ = model.encode()
        user, _ = model.encode(sub)
        assert torch.allclose(user, full_user[sub.user_id], atol=1e-6)
        model.train()  # no dropout on the users' side: deterministic
        assert model._meta_means is None
        train_user, _ = model.encode(sub)
    # the subgraph's own means (its users only) give other representations
    assert not torch.allclose(train_user, user, atol=1e-4)


def test_homography_neighbors_setting_is_checked(data):
    with pytest.raises(ValueError, match='homography_neighbors'):
        build(data, homography_neighbors={'user': 3})
