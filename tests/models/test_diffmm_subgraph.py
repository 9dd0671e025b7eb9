"""The DiffMM family (MDMNS, GenRec-V1) on sampled subgraphs: the training
graph's and the generated graphs' blocks on a subgraph with the full
graphs' weights, the neighbour source that samples each epoch's generated
graphs, and the exactness of the rows whose receptive field was sampled."""
import logging

import pytest
import torch

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.loader import GeneratedGraphNeighborSource, Subgraph
from pyg_mmrec.models import MODELS
from pyg_mmrec.models.diffmm_subgraph import subgraph_nodes

#: Small denoisers (speed) and the settings of each case.
SMALL = {'mdmns': dict(denoiser_hidden=16),
         'genrec': dict(denoiser_hidden=16, denoiser_layers=1,
                        denoiser_ff=16)}


@pytest.fixture(scope='module')
def data():
    # sparse enough that a user's receptive field is a part of the graph
    return make_synthetic(num_users=300, num_items=300, seed=3)


@pytest.fixture(scope='module')
def large():
    return make_synthetic(num_users=1500, num_items=1500, seed=3)


def build(name, data, **kwargs):
    torch.manual_seed(0)
    return MODELS[name](data, embedding_dim=8, **SMALL[name], **kwargs)


def epoch_batches(model, data, epoch=1, batch_size=32, **kwargs):
    source = model.neighbor_source(train_graph(data), batch_size, **kwargs)
    assert isinstance(source, GeneratedGraphNeighborSource)
    return source.batches(epoch, torch.Generator().manual_seed(epoch))


def assert_current_entries(model, batch):
    r"""Every sampled generated entry of :obj:`batch` is the stored entry
    of the model's current graph at its position."""
    sub = batch.subgraph
    nodes = subgraph_nodes(sub, model.num_users)
    assert set(sub.graph_entries) == set(model.core.keys)
    for key, (index, position) in sub.graph_entries.items():
        adj, _ = model.core.graph(key)
        row, col = nodes[index[0]], nodes[index[1]]
        assert torch.equal(adj.to_dense()[row, col], adj.values()[position])
        assert torch.equal(adj.col_indices()[position], col)


def shifted_generation(num_items, shift):
    # a deterministic generation: each user's first item plus shift, ...
    def generate(key, rows, k):
        first = rows.argmax(dim=1, keepdim=True)
        return (first + shift + torch.arange(k)) % num_items
    return generate


@pytest.mark.parametrize('name', ['mdmns', 'genrec'])
def test_sampled_entries_follow_the_current_generated_graphs(data, name):
    model = build(name, data)
    model.train()
    batches = list(epoch_batches(model, data, num_neighbors='3,3'))
    for batch in batches:
        assert_current_entries(model, batch)
    assert sum(b.subgraph.graph_entries[model.core.keys[0]][0].size(1)
               for b in batches) > 0
    terms = model(batches[0])
    assert all(torch.isfinite(t) for t in terms.values())
    # a rebuild (after the stage in training): new items, new dropout
    old = {k: model.core.graph(k)[0].to_dense() for k in model.core.keys}
    model.core.generate = shifted_generation(model.num_items, 7)
    model.core.rebuild()
    new = {k: model.core.graph(k)[0].to_dense() for k in model.core.keys}
    assert all(not torch.equal(old[k], new[k]) for k in old)
    later = epoch_batches(model, data, epoch=2, num_neighbors='3,3')
    for batch in later:
        assert_current_entries(model, batch)
    # an earlier epoch's entries are refused, not read at wrong positions
    with pytest.raises(ValueError, match="model's current graph"):
        model(batches[0])


@pytest.mark.parametrize('name', ['mdmns', 'genrec'])
def test_subgraph_blocks_hold_the_full_graphs_weights(data, name):
    model = build(name, data)
    graph = train_graph(data)
    users = torch.arange(0, graph.num_users, 2).flip(0)  # any local order
    items = torch.randperm(graph.num_items,
                           generator=torch.Generator().manual_seed(0))[:200]
    sub = Subgraph.induced(graph, users, items)
    core = model.core
    nodes = subgraph_nodes(sub, model.num_users)
    blocks = core.blocks(sub)
    assert core.blocks(sub) is blocks  # built once per subgraph
    full = core.adj.to_dense()
    # the induced subgraph holds every edge between its nodes: the block
    assert torch.equal(blocks.adj.to_dense(), full[nodes][:, nodes])
    assert torch.equal(blocks.norm.to_dense(),
                       core.norm_interactions.to_dense()[users][:, items])
    assert torch.equal(blocks.loop_user, core.loop_user[users])
    assert torch.equal(blocks.loop_item, core.loop_item[items])
    for key in core.keys:
        g, g_t = core.generated(key, sub)
        expected = core.graph(key)[0].to_dense()[nodes][:, nodes]
        assert torch.equal(g.to_dense(), expected)
        assert torch.equal(g_t.to_dense(), expected.t())
    # sampled entries: those and the diagonal only
    key = core.keys[0]
    dense = core.graph(key)[0].to_dense()[nodes][:, nodes]
    index = dense.nonzero().t()
    index = index[:, index[0] != index[1]][:, ::2]  # half the entries
    crow = core.graph(key)[0].crow_indices()
    col = core.graph(key)[0].col_indices()
    position = torch.stack([
        crow[r] + (col[crow[r]:crow[r + 1]] == c).nonzero().view(())
        for r, c in zip(nodes[index[0]].tolist(), nodes[index[1]].tolist())])
    sampled = Subgraph(sub.user_id, sub.item_id, sub.edge_index,
                       graph_entries={key: (index, position)})
    expected = torch.zeros_like(dense)
    expected[index[0], index[1]] = dense[index[0], index[1]]
    expected += torch.diag(dense.diagonal())
    assert torch.equal(core.generated(key, sampled)[0].to_dense(), expected)


@pytest.mark.parametrize('name,kwargs,fanout', [
    ('mdmns', dict(num_layers=0), [-1, -1]),  # receptive field: 2 hops
    ('mdmns', dict(num_layers=1, cl_method=1), [-1, -1, -1]),  # 3
    ('genrec', dict(), [-1])])  # one hop (the kNN hop is exact)
def test_all_neighbours_over_the_receptive_field_give_the_full_graph_bpr(
        large, name, kwargs, fanout):
    model = build(name, large, **kwargs)
    assert model.subgraph_hops == len(fanout)
    model.eval()  # GenRec: BatchNorm's running statistics, no dropout
    # the loader's negatives: seeds of the sampler, with their neighbours
    batch = next(epoch_batches(model, large, batch_size=2,
                               num_neighbors=fanout, negatives='loader'))
    sub = batch.subgraph  # not the whole graph
    assert sub.num_users + sub.num_items < model.num_users + model.num_items
    with torch.no_grad():
        full = model(batch.with_subgraph(None))
        sub = model(batch)
    torch.testing.assert_close(sub['bpr'], full['bpr'])
    if name == 'genrec':  # in-batch InfoNCE: the batch's rows only
        torch.testing.assert_close(sub['cl'], full['cl'])


def test_mdmns_fused_branch_is_exact_on_its_receptive_field(data):
    # With num_layers=0 a user's fused embedding reads its items' modality
    # branch outputs: their users (the training graph) and the users that
    # generated them (each generated graph), with every item.
    model = build('mdmns', data, num_layers=0)
    model.eval()
    graph = train_graph(data)
    with torch.no_grad():
        full_user, _ = model.encode()
    checked = 0
    for user in range(0, graph.num_users, 25):
        items = graph.edge_index[1, graph.edge_index[0] == user]
        field = [torch.tensor([user]),
                 graph.edge_index[0, torch.isin(graph.edge_index[1], items)]]
        for key in model.core.keys:
            generated = getattr(model.core, f'generated_{key}')
            field.append(torch.isin(generated, items).any(1).nonzero()
                         .view(-1))
        users = torch.cat(field).unique()
        if users.numel() == graph.num_users:
            continue
        sub = Subgraph.induced(graph, users, torch.arange(graph.num_items))
        with torch.no_grad():
            sub_user, _ = model.encode(sub)
        row = int((users == user).nonzero())
        torch.testing.assert_close(sub_user[row], full_user[user])
        checked += 1
    assert checked > 0


def test_a_short_fanout_is_logged(data, caplog):
    model = build('mdmns', data, num_layers=1)  # reads 3 hops
    with caplog.at_level(logging.INFO, logger='pyg_mmrec'):
        model.neighbor_source(train_graph(data), 32, num_neighbors='5,5')
    assert 'samples 2 hop(s)' in caplog.text


def test_genrec_without_the_generated_graph_samples_the_interactions(data):
    model = build('genrec', data, use_generated_graph=False)
    model.train()
    batch = next(epoch_batches(model, data))
    assert batch.subgraph.graph_entries == {}
    assert not bool(model.core.has_generated)  # nothing to generate
    terms = model(batch)
    assert all(torch.isfinite(t) for t in terms.values())
