"""A sampled subgraph propagates with the full training graph's
normalisation (DESIGN, "Scale"): a user whose whole neighbourhood is in the
subgraph aggregates exactly as on the full graph, even though the
subgraph's items have lost some of their users (their subgraph degrees are
smaller)."""
import pytest
import torch

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.loader import Subgraph
from pyg_mmrec.models import MODELS

#: One-hop settings of every model that trains on subgraphs: a new one is
#: added here (the test below fails until it is).
ONE_HOP = {'lightgcn': dict(num_layers=1),
           'vbpr': dict(),
           'freedom': dict(num_ui_layers=1, num_mm_layers=1)}


def test_every_subgraph_model_is_checked():
    assert set(ONE_HOP) == {name for name, cls in MODELS.items()
                            if cls.supports_subgraph}


@pytest.mark.parametrize('name', sorted(ONE_HOP))
def test_a_fully_sampled_user_aggregates_as_on_the_full_graph(name):
    data = make_synthetic(num_users=80, num_items=50, seed=4)
    torch.manual_seed(0)
    model = MODELS[name](data, embedding_dim=8, **ONE_HOP[name]).eval()
    graph = train_graph(data)
    # every item, a third of the users: the items' subgraph degrees drop
    users, items = torch.arange(0, 80, 3), torch.arange(50)
    sub = Subgraph.induced(graph, users, items)
    assert (torch.bincount(sub.edge_index[1], minlength=50)
            < graph.item_degree()).any()
    with torch.no_grad():
        full_user, _ = model.encode()
        sub_user, _ = model.encode(sub)
    assert torch.allclose(sub_user, full_user[users], atol=1e-6)
