r"""The DiffMM family (:class:`~pyg_mmrec.models.MDMNS`,
:class:`~pyg_mmrec.models.GenRec`) on sampled subgraphs: the training
graph's forms and the generated graphs restricted to a
:class:`~pyg_mmrec.loader.Subgraph`'s nodes with the **full** graphs'
weights, and the members' shared mini-batch parts (their neighbour source,
node embeddings and regulariser).

**What is sampled** (:obj:`SubgraphParts.neighbor_source`,
:class:`~pyg_mmrec.loader.GeneratedGraphNeighborSource`): the training
interactions and every generated graph :math:`\mathbf{G}_k` as edge types
of one heterogeneous graph, read when an epoch's batches start (the
graphs are regenerated after the denoiser stage, before the batches, and
are fixed during them). The fan-out list gives the hops :math:`H` and the
neighbours per hop of every edge type: a node samples up to that many
training neighbours and entries of its row of each :math:`\mathbf{G}_k`
(a user has :obj:`rebuild_k` generated items, all sampled when the fan-out
is at least that; an item's row holds the users that generated it).

**Weights**: the training graph's entries on the subgraph are those of the
full :math:`\hat{\mathbf{A}}` (:obj:`subgraph_blocks`: the global degrees
of its nodes, as :func:`~pyg_mmrec.graphs.subgraph_adjacency`), and a
sampled entry of :math:`\mathbf{G}_k` takes its value from the stored
entries of the full graph by its position, with every node's diagonal
entry (:obj:`generated_block`; dropped entries stay dropped). A subgraph
without sampled entries (e.g. :meth:`~pyg_mmrec.loader.Subgraph.induced`)
reads every entry of :math:`\mathbf{G}_k` between its nodes. A subgraph
holding the whole graph therefore propagates exactly as the full graph,
and a node whose whole receptive field was sampled (fan-out :obj:`-1` over
enough hops) gets its full-graph representation; a node nearer the
subgraph's border aggregates only its sampled neighbours, with the full
graph's weights (the sum is truncated, not rescaled).
"""
import logging
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from ..graphs import subgraph_adjacency, to_sparse_csr
from ..graphs.pairs import PairIndex
from ..graphs.sparse import csr_transpose, expand_runs
from ..loader import GeneratedGraphNeighborSource, Subgraph
from ..loader.batch import positions_in
from ..loader.neighbor import parse_num_neighbors
from ..nn import sparse_mm

log = logging.getLogger(__name__)


class GraphBlocks(NamedTuple):
    r"""The training graph in the forms the DiffMM family reads, on every
    node or on a subgraph's (:meth:`~pyg_mmrec.models.DiffMMCore.blocks`):
    the self-looped GCN-normalised :math:`\hat{\mathbf{A}}` :obj:`adj`, its
    user-item block :math:`\mathbf{R}` :obj:`norm` and :obj:`norm_t`, the
    self-loop weights :obj:`loop_user` and :obj:`loop_item` :obj:`[*, 1]`,
    and the number of users (the rows before the items)."""
    adj: Tensor
    norm: Tensor
    norm_t: Tensor
    loop_user: Tensor
    loop_item: Tensor
    num_users: int

    def split(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The user rows and the item rows of :obj:`x`."""
        return x[:self.num_users], x[self.num_users:]

    def adj_blocks(self, x_user: Tensor, x_item: Tensor) -> Dict[str, Tensor]:
        r"""The four block products of :math:`\hat{\mathbf{A}}
        [\mathbf{X}_u; \mathbf{X}_i]`: :obj:`"uu"` :math:`\mathbf{S}_u
        \mathbf{X}_u`, :obj:`"ui"` :math:`\mathbf{R} \mathbf{X}_i`,
        :obj:`"iu"` :math:`\mathbf{R}^{\top} \mathbf{X}_u` and :obj:`"ii"`
        :math:`\mathbf{S}_i \mathbf{X}_i`."""
        return {'uu': self.loop_user * x_user, 'ii': self.loop_item * x_item,
                'ui': sparse_mm(self.norm, x_item, self.norm_t),
                'iu': sparse_mm(self.norm_t, x_user, self.norm)}

    def modality_branch(self, x_item: Tensor, ids: Dict[str, Tensor],
                        generated: Tensor, generated_weight: float) -> Tensor:
        r"""DiffMM's modality branch :math:`\hat{\mathbf{A}}[\mathbf{E}_u;
        \mathbf{X}] + \hat{\mathbf{A}}[(\hat{\mathbf{A}}[\mathbf{E}_u;
        \mathbf{X}])_u; \mathbf{E}_i] + \lambda_a \mathbf{H}^{gen}`
        :obj:`[U + I, d]` of the item rows :obj:`x_item`, given
        :obj:`ids`, the :meth:`adj_blocks` of the ID embeddings (shared by
        every branch), :obj:`generated` :math:`\mathbf{H}^{gen}` and
        :obj:`generated_weight` :math:`\lambda_a`."""
        # With A = [[S_u, R], [R^T, S_i]] only R X and R^T h_u depend on
        # the branch; the rest is the shared ID products.
        h_u = ids['uu'] + sparse_mm(self.norm, x_item, self.norm_t)
        h_i = ids['iu'] + self.loop_item * x_item
        h2_u = self.loop_user * h_u + ids['ui']
        h2_i = sparse_mm(self.norm_t, h_u, self.norm) + ids['ii']
        out = torch.cat([h_u + h2_u, h_i + h2_i])
        return torch.add(out, generated, alpha=generated_weight)


def subgraph_blocks(core, subgraph: Subgraph) -> GraphBlocks:
    r"""The :class:`GraphBlocks` of :obj:`subgraph`'s training edges with the
    full training graph's weights: the same values as the full graph's
    entries (:obj:`core`: a :class:`~pyg_mmrec.models.DiffMMCore`)."""
    user_id, item_id = subgraph.user_id, subgraph.item_id
    adj = subgraph_adjacency(subgraph, (core.user_degree, core.item_degree),
                             self_loops=True)
    row, col = subgraph.edge_index
    scale = core.degree_scale
    value = scale[user_id[row]] * scale[core.num_users + item_id[col]]
    norm = to_sparse_csr(subgraph.edge_index, value,
                         (subgraph.num_users, subgraph.num_items))
    return GraphBlocks(adj, norm, csr_transpose(norm),
                       core.loop_user[user_id], core.loop_item[item_id],
                       subgraph.num_users)


def subgraph_nodes(subgraph: Subgraph, num_users: int) -> Tensor:
    r"""The global node ids :obj:`[N_u + N_i]` of :obj:`subgraph`'s users
    and items in the square graphs' numbering (item :math:`i` is node
    :math:`U + i`), in the subgraph's order."""
    return torch.cat([subgraph.user_id, num_users + subgraph.item_id])


def induced_entries(adj: Tensor, nodes: Tensor) -> Tuple[Tensor, Tensor]:
    r"""Every stored entry of the CSR matrix :obj:`adj` between the global
    nodes :obj:`nodes` (distinct): :obj:`(index, position)`, the entries in
    positions of :obj:`nodes` :obj:`[2, E]` and among :obj:`adj`'s values
    :obj:`[E]`."""
    crow, col = adj.crow_indices().long(), adj.col_indices().long()
    start = crow[nodes]
    run, at = expand_runs(start, crow[nodes + 1] - start)
    local, found = positions_in(nodes, col[at])
    return torch.stack([run[found], local[found]]), at[found]


def check_entries(adj: Tensor, nodes: Tensor, index: Tensor,
                  position: Tensor, name: str) -> None:
    r"""Raises a clear error unless every sampled entry (local
    :obj:`index`, :obj:`position`) is the stored entry of :obj:`adj` at
    that position (a subgraph sampled from an earlier epoch's graph is
    refused)."""
    crow, col = adj.crow_indices().long(), adj.col_indices().long()
    row = nodes[index[0]]
    ok = ((position >= crow[row]) & (position < crow[row + 1]) &
          (col[position.clamp(max=max(col.numel() - 1, 0))] ==
           nodes[index[1]]))
    if not bool(ok.all()):
        raise ValueError(
            f"the subgraph's sampled entries of the generated graph "
            f"{name!r} are not entries of the model's current graph (were "
            f"they sampled before the graph was regenerated?)")


def generated_block(adj: Tensor, diagonal: Tensor, nodes: Tensor,
                    entries: Optional[Tuple[Tensor, Tensor]] = None,
                    name: str = '?') -> Tuple[Tensor, Tensor]:
    r"""The block of a generated graph :obj:`adj` :obj:`[U + I, U + I]` on
    the global :obj:`nodes` and its transpose, as CSR matrices
    :obj:`[N, N]`: the sampled :obj:`entries` (:obj:`(index, position)`,
    see :class:`~pyg_mmrec.loader.Subgraph`'s :obj:`graph_entries`) with
    their stored values and every node's diagonal entry from
    :obj:`diagonal` :obj:`[U + I]` (zero where it was dropped), or, without
    :obj:`entries`, every stored entry between the nodes."""
    if entries is None:
        index, position = induced_entries(adj, nodes)
        value = adj.values()[position]
    else:
        index, position = entries
        check_entries(adj, nodes, index, position, name)
        loops = torch.arange(nodes.numel(), device=nodes.device)
        loop_value = diagonal[nodes]
        kept = loop_value != 0
        index = torch.cat([index, loops[kept].expand(2, -1)], dim=1)
        value = torch.cat([adj.values()[position], loop_value[kept]])
    block = to_sparse_csr(index, value, (nodes.numel(), nodes.numel()))
    return block, csr_transpose(block)


class SubgraphParts:
    r"""The DiffMM members' mini-batch parts (a mixin of a
    :class:`~pyg_mmrec.models.Recommender` with :obj:`user_embedding`,
    :obj:`item_embedding` and a :class:`~pyg_mmrec.models.DiffMMCore`
    :obj:`core`; see the module docstring). A member sets
    :attr:`subgraph_hops`."""
    #: The hops of the training graph that the rows of a batch's loss read
    #: (the depth a sampled subgraph must have for them to be exact).
    subgraph_hops: int = 1

    def neighbor_source(self, graph: PairIndex, batch_size: int,
                        **kwargs) -> GeneratedGraphNeighborSource:
        r"""Mini-batches on subgraphs sampled over the training interactions
        and the generated graphs, read when each epoch's batches start
        (:class:`~pyg_mmrec.loader.GeneratedGraphNeighborSource`); keyword
        arguments are those of
        :meth:`~pyg_mmrec.models.Recommender.neighbor_source`. The fan-out
        list gives the hops: fewer than :attr:`subgraph_hops` truncate the
        batch's receptive field (logged)."""
        hops = len(parse_num_neighbors(kwargs.get('num_neighbors', '10,10')))
        if hops < self.subgraph_hops:
            log.info("%s: the fan-out samples %d hop(s) and the batch's "
                     "loss reads %d: the outer nodes aggregate their "
                     "sampled neighbours only", type(self).__name__, hops,
                     self.subgraph_hops)
        return GeneratedGraphNeighborSource(
            graph, batch_size,
            lambda: self.core.sampling_graphs(self.generated_keys()),
            **kwargs)

    def generated_keys(self) -> List[str]:
        r"""The generated graphs the recommender reads (and a neighbour
        source samples): every key of the core."""
        return list(self.core.keys)

    def node_embeddings(self, subgraph: Optional[Subgraph] = None
                        ) -> Tuple[Tensor, Tensor]:
        r"""The ID embedding tables, or their rows of :obj:`subgraph`'s
        users and items."""
        if subgraph is None:
            return self.user_embedding.weight, self.item_embedding.weight
        return (self.user_embedding(subgraph.user_id),
                self.item_embedding(subgraph.item_id))

    def embedding_reg_terms(self, subgraph: Optional[Subgraph] = None
                            ) -> Dict[str, Tensor]:
        r"""The regulariser (:meth:`~pyg_mmrec.models.DiffMMCore.reg_terms`)
        of the whole ID tables, or of :obj:`subgraph`'s rows."""
        return self.core.reg_terms(*self.node_embeddings(subgraph))
