import pytest
import torch
from sampling_helpers import random_adjacency

from pyg_mmrec.graphs.receptive import receptive_field


@pytest.mark.parametrize('num_hops', [0, 1, 3])
def test_receptive_field_holds_the_hops_and_their_blocks(num_hops):
    adj = random_adjacency(num_users=40, num_items=30, num_edges=70)
    dense = adj.to_dense()
    rows = torch.tensor([3, 3, 50, 7, 60, 0, 50])  # repeats, users, items
    field = receptive_field(adj, rows, num_hops)
    assert len(field.nodes) == num_hops + 1
    assert len(field.blocks) == len(field.blocks_t) == num_hops
    assert torch.equal(field.nodes[0], rows.unique())
    assert torch.equal(field.nodes[0][field.index], rows)
    for hop in range(num_hops):
        # S_{h+1} = S_h and its neighbours ...
        reach = (dense[field.nodes[hop]] != 0).any(0)
        reach[field.nodes[hop]] = True
        assert torch.equal(field.nodes[hop + 1], reach.nonzero().view(-1))
        # ... so that A[S_h, S_{h+1}] keeps every entry of those rows.
        block = dense[field.nodes[hop]][:, field.nodes[hop + 1]]
        assert torch.allclose(block.sum(1), dense[field.nodes[hop]].sum(1))
        assert torch.equal(field.blocks[hop].to_dense(), block)
        assert torch.equal(field.blocks_t[hop].to_dense(), block.t())
    assert field.nodes[-1].numel() < dense.size(0)  # not the whole graph
    for hop, nodes in enumerate(field.nodes):
        assert torch.equal(nodes[field.targets[hop]], field.nodes[0])
    with pytest.raises(ValueError, match='num_hops'):
        receptive_field(adj, rows, -1)
