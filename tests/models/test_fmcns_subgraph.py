"""FMCNS on sampled subgraphs (``sampler='neighbor'``): the causal pool
among the subgraph's items, the flow term and the mixed input at local
positions, the extra pool items of the loader and the item-block
generation. The registry tests (``test_subgraph_normalisation.py``,
``test_leakage_subgraph.py``) cover the whole-graph equality and leakage.
"""
from dataclasses import replace

import pytest
import torch
from sampling_helpers import power_law_graph

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.loader import NeighborSource, PoolNeighborSource, Subgraph
from pyg_mmrec.models import FMCNS
from pyg_mmrec.nn import CausalNegativeSampler

#: Skewed training pairs: users with many items, pools full of positives.
SMALL = dict(num_users=60, num_items=40, num_edges=700)


def subgraph_case(num_candidates, top_k, num_sub_items=25, seed=0):
    graph = power_law_graph(**SMALL)
    gen = torch.Generator().manual_seed(seed)
    items = torch.randperm(40, generator=gen)[:num_sub_items]
    sub = Subgraph.induced(graph, torch.arange(60), items)
    sampler = CausalNegativeSampler(graph, num_candidates=num_candidates,
                                    top_k=top_k)
    users = torch.randint(60, (64, ), generator=gen)
    pos = sub.item_id[torch.randint(num_sub_items, (64, ), generator=gen)]
    emb = torch.randn(num_sub_items, 8, generator=gen)
    generated = torch.randn(64, 8, generator=gen)
    local = (sub.item_id.view(1, -1) == pos.view(-1, 1)).long().argmax(1)
    return graph, sub, sampler, users, pos, local, emb, generated


def test_pool_negatives_are_never_training_positives():
    graph, sub, sampler, users, pos, local, emb, generated = \
        subgraph_case(num_candidates=6, top_k=3)
    fallback = torch.full_like(users, -1)  # marks the rows without one
    hits = 0
    for seed in range(200):
        torch.manual_seed(seed)
        neg = sampler.sample_subgraph(users, pos, local, sub.item_id, emb,
                                      generated, fallback=fallback)
        drawn = neg >= 0
        hits += int(drawn.sum())
        assert not graph.contains(users[drawn], sub.item_id[neg[drawn]]).any()
        # A row gets the fallback only if its whole pool is positive.
        torch.manual_seed(seed)
        pool = torch.argsort(sub.item_id)[torch.randperm(sub.num_items)[:6]]
        full = graph.contains(users.view(-1, 1),
                              sub.item_id[pool].view(1, -1)).all(1)
        assert torch.equal(~drawn, full)
    assert hits > 0.5 * 200 * users.numel()


@pytest.mark.parametrize('num_candidates,top_k', [(10, 1), (10, 4),
                                                  (30, 12)])
def test_causal_ranking_within_the_pool_matches_a_dense_reference(
        num_candidates, top_k):
    graph, sub, sampler, users, pos, local, emb, generated = \
        subgraph_case(num_candidates, top_k)
    dense = torch.zeros(60, 40, dtype=torch.bool)
    dense[graph.edge_index[0], graph.edge_index[1]] = True
    freq = graph.item_degree().float() / 60
    m = torch.sigmoid(-3.0 * (freq[pos] - freq.mean()) / (freq.std() + 1e-8))
    anchor = m.view(-1, 1) * generated + (1 - m.view(-1, 1)) * emb[local]
    # A pool smaller than N_c (25 items for 30) keeps the top share.
    k = top_k if sub.num_items >= num_candidates else max(
        1, top_k * sub.num_items // num_candidates)
    for seed in range(20):
        torch.manual_seed(seed)
        by_id = torch.argsort(sub.item_id)
        pool = by_id[torch.randperm(sub.num_items)[:num_candidates]]
        score = anchor @ emb[pool].t()
        score[dense[users][:, sub.item_id[pool]]] = float('-inf')
        top = score.topk(k, dim=1)
        torch.manual_seed(seed)
        neg = sampler.sample_subgraph(users, pos, local, sub.item_id, emb,
                                      generated, fallback=local)
        for row in range(users.numel()):
            allowed = {int(pool[i]) for i, s in zip(top.indices[row],
                                                    top.values[row])
                       if s > float('-inf')}
            assert int(neg[row]) in (allowed or {int(local[row])})
            if top_k == 1 and allowed:  # the argmax itself
                assert int(neg[row]) == int(pool[score[row].argmax()])


def build(**kwargs):
    data = make_synthetic(num_users=80, num_items=200, seed=2)
    kwargs.setdefault('pool_extra', 10)
    torch.manual_seed(0)
    return data, FMCNS(data, embedding_dim=8, num_candidates=20, **kwargs)


def sampled_batch(model, data, **kwargs):
    source = model.neighbor_source(train_graph(data), 16,
                                   num_neighbors='1', **kwargs)
    return next(iter(source.batches(1, torch.Generator().manual_seed(0))))


def test_the_flow_term_and_input_on_a_subgraph_equal_the_full_graph_ones(
        monkeypatch):
    data, model = build()
    model.train()
    model.on_epoch_start(1)
    batch = sampled_batch(model, data)
    assert batch.subgraph.num_items < model.num_items
    inputs = {}

    def record(name, fn):
        def wrapped(item_input, *args):
            inputs[name] = item_input.detach()
            return fn(item_input, *args)
        monkeypatch.setattr(model, name, wrapped)
    record('propagate_rows', model.propagate_rows)
    record('propagate_subgraph', model.propagate_subgraph)
    state = torch.get_rng_state()
    full = model(replace(batch, subgraph=None))
    torch.set_rng_state(state)
    sub = model(batch)
    assert torch.equal(sub['flow'], full['flow'])
    # The mixed rows (batch items, last occurrence) and the plain ones.
    item_id = batch.subgraph.item_id
    assert torch.allclose(inputs['propagate_subgraph'],
                          inputs['propagate_rows'][item_id], atol=1e-6)
    mixed = torch.isin(item_id, torch.cat([batch.pos, batch.neg]))
    h = model.item_graph_embedding(item_id).detach()
    assert not torch.allclose(inputs['propagate_subgraph'][mixed], h[mixed])
    assert torch.equal(inputs['propagate_subgraph'][~mixed], h[~mixed])


def test_training_draws_causal_negatives_from_the_subgraph(monkeypatch):
    data, model = build()
    graph = train_graph(data)
    model.train()
    model.on_epoch_start(1)
    model.on_epoch_end(1)
    batch = sampled_batch(model, data)
    drawn = []
    sample = model.causal_sampler.sample_subgraph

    def recording(*args, **kwargs):
        out = sample(*args, **kwargs)
        drawn.append(out)
        return out
    monkeypatch.setattr(model.causal_sampler, 'sample_subgraph', recording)
    terms = model(batch)
    assert set(terms) == {'bpr', 'bpr_causal', 'flow'}
    (neg, ) = drawn
    assert not graph.contains(batch.user, batch.subgraph.item_id[neg]).any()


def test_pool_items_join_the_subgraph_with_their_training_edges():
    data, model = build(pool_extra=30)
    graph = train_graph(data)
    source = sampled_source = model.neighbor_source(graph, 32,
                                                    num_neighbors='1')
    assert isinstance(sampled_source, PoolNeighborSource)
    plain = NeighborSource(graph, 32, num_neighbors='1')
    gen = torch.Generator
    pooled = next(iter(source.batches(1, gen().manual_seed(0)))).subgraph
    base = next(iter(plain.batches(1, gen().manual_seed(0)))).subgraph
    assert torch.equal(pooled.item_id[:base.num_items], base.item_id)
    assert pooled.num_items > base.num_items
    row, col = pooled.edge_index
    assert graph.contains(pooled.user_id[row], pooled.item_id[col]).all()
    # Every training edge of an added item to a sampled user is there.
    added = torch.arange(base.num_items, pooled.num_items)
    users, items = torch.meshgrid(torch.arange(pooled.num_users), added,
                                  indexing='ij')
    edge = graph.contains(pooled.user_id[users], pooled.item_id[items])
    keys = set((row * pooled.num_items + col).tolist())
    want = set((users[edge] * pooled.num_items + items[edge]).tolist())
    assert want and want <= keys
    # Without extra items (or causal negatives), the plain source.
    _, model = build(pool_extra=0)
    assert type(model.neighbor_source(graph, 32)) is NeighborSource


def test_generation_in_item_blocks_equals_one_block():
    _, model = build()
    model.eval()
    torch.manual_seed(3)
    whole = model.generate().clone()
    model.generate_block_size = 7
    torch.manual_seed(3)
    blocks = model.generate()
    assert torch.allclose(blocks, whole, atol=1e-6)


def test_a_subgraph_of_every_item_draws_the_full_graph_negatives():
    """One pool rule: the subgraph's pool of all items (in any local order)
    is the full-graph pool, so both draw the same negatives."""
    graph = power_law_graph(**SMALL)
    sampler = CausalNegativeSampler(graph, num_candidates=10, top_k=3)
    gen = torch.Generator().manual_seed(5)
    users = torch.randint(60, (64, ), generator=gen)
    pos = torch.randint(40, (64, ), generator=gen)
    emb, generated = torch.randn(2, 40, 8, generator=gen)
    item_id = torch.randperm(40, generator=gen)  # local position -> id
    local = torch.argsort(item_id)  # id -> local position
    for seed in range(10):
        torch.manual_seed(seed)
        full = sampler.sample(users, pos, emb, generated)
        torch.manual_seed(seed)
        sub = sampler.sample_subgraph(users, pos, local[pos], item_id,
                                      emb[item_id], generated[pos],
                                      fallback=local[full])
        assert torch.equal(item_id[sub], full)
