"""A sampled subgraph propagates with the full training graph's
normalisation (DESIGN, "Scale"; issue 29 item 1), for every model that
says ``supports_subgraph``:

* a user whose whole neighbourhood is in the subgraph aggregates exactly as
  on the full graph, even though the subgraph's items have lost some of
  their users (their subgraph degrees are smaller);
* a "subgraph" holding the whole training graph reproduces the full-graph
  loss terms (same batch, same random state) and the gradients.

A model that starts to support subgraphs gets an entry in
:obj:`ONE_HOP` (the first test fails until it has one).
"""
import pytest
import torch

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.loader import Subgraph
from pyg_mmrec.models import MODELS

#: One-hop settings of every model that trains on subgraphs (a one-hop
#: propagation is what "a fully sampled user" makes exact).
ONE_HOP = {'lightgcn': dict(num_layers=1),
           'bm3': dict(num_layers=1),
           'mgcn': dict(num_ui_layers=1),
           'smore': dict(num_ui_layers=1),
           'vbpr': dict(),
           'freedom': dict(num_ui_layers=1, num_mm_layers=1),
           'fmcns': dict(num_ui_layers=1, num_mm_layers=1),
           'mcln': dict(num_layers=1),
           'rearm': dict(num_layers=1),
           # no encoder layer after the branches; small denoisers (speed)
           'mdmns': dict(num_layers=0, denoiser_hidden=16),
           # a user's row of a modality branch reads one hop of the
           # training graph and of the generated graph: no layer after them
           'diffmm': dict(num_layers=0, denoiser_hidden=16),
           # one hop by construction; small denoiser (speed)
           'genrec': dict(denoiser_hidden=16, denoiser_layers=1,
                          denoiser_ff=16)}


def mdmns_modality_columns(model):
    # MDMNS's embeddings are its branches side by side, the fused branch
    # first: its modality branches' columns.
    return slice(model.embedding_dim, None)


#: The columns of a user's embedding that a one-hop setting makes exact,
#: for a model where no setting makes all of them one hop (default: all).
#: MDMNS's fused branch reads, at each of the user's items, the modality
#: branches' item output, itself an aggregation over that item's users
#: (two hops of the training graph, one of the generated graph): a user's
#: fused embedding reads three hops whatever the settings, so only its
#: modality branches (one hop with num_layers=0) are checked here; the
#: fused branch is checked on its whole receptive field in
#: tests/models/test_diffmm_subgraph.py.
ONE_HOP_COLUMNS = {'mdmns': mdmns_modality_columns}


def subgraph_models():
    return sorted(name for name, cls in MODELS.items()
                  if cls.supports_subgraph)


def build(name):
    data = make_synthetic(num_users=80, num_items=50, seed=4)
    torch.manual_seed(0)
    return data, MODELS[name](data, embedding_dim=8, **ONE_HOP[name])


def test_every_subgraph_model_is_checked():
    assert set(subgraph_models()) <= set(ONE_HOP)
    assert {'lightgcn', 'vbpr', 'freedom'} <= set(subgraph_models())


@pytest.mark.parametrize('name', subgraph_models())
def test_a_fully_sampled_user_aggregates_as_on_the_full_graph(name):
    data, model = build(name)
    model.eval()
    graph = train_graph(data)
    # every item, a third of the users: the items' subgraph degrees drop
    users, items = torch.arange(0, 80, 3), torch.arange(50)
    sub = Subgraph.induced(graph, users, items)
    assert (torch.bincount(sub.edge_index[1], minlength=50)
            < graph.item_degree()).any()
    with torch.no_grad():
        full_user, _ = model.encode()
        sub_user, _ = model.encode(sub)
    columns = ONE_HOP_COLUMNS.get(name, lambda model: slice(None))(model)
    assert torch.allclose(sub_user[:, columns], full_user[users][:, columns],
                          atol=1e-6)


def loss_and_grads(model, batch, epoch_state):
    torch.set_rng_state(epoch_state)
    model.zero_grad()
    terms = model(batch)
    sum(terms.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()
             if p.grad is not None}
    return {k: v.detach() for k, v in terms.items()}, grads


@pytest.mark.parametrize('name', subgraph_models())
def test_the_whole_graph_as_a_subgraph_gives_the_full_graph_losses(name):
    data, model = build(name)
    graph = train_graph(data)
    whole = Subgraph.induced(graph, torch.arange(graph.num_users),
                             torch.arange(graph.num_items))
    model.train()
    torch.manual_seed(1)
    # What a model builds on first use with random draws (GenRec-V1's first
    # generated graph) is built before the state both passes start from.
    with torch.no_grad():
        model.encode()
    for epoch in (1, 2):  # the second epoch: after on_epoch_end's updates
        model.on_epoch_start(epoch)
        source = model.batch_source(graph, 32)
        batch = next(iter(source.batches(
            epoch, torch.Generator().manual_seed(epoch))))
        state = torch.get_rng_state()
        full_terms, full_grads = loss_and_grads(model, batch, state)
        sub_terms, sub_grads = loss_and_grads(
            model, batch.with_subgraph(whole), state)
        assert full_terms.keys() == sub_terms.keys()
        for key in full_terms:
            assert torch.allclose(sub_terms[key], full_terms[key],
                                  rtol=1e-5, atol=1e-6), (epoch, key)
        assert full_grads.keys() == sub_grads.keys()
        for key in full_grads:
            assert torch.allclose(sub_grads[key], full_grads[key],
                                  rtol=1e-4, atol=1e-6), (epoch, key)
        model.eval()
        model.on_epoch_end(epoch)
        model.train()
