r"""Mini-batch training on sampled subgraphs with same-type relations
(user-user and item-item graphs, e.g. REARM's homography graphs) besides
the training interactions: a heterogeneous neighbour sampler over
:obj:`(user, interacts, item)`, :obj:`(user, co, user)` and
:obj:`(item, co, item)`, each with its own fan-out."""
import warnings
from dataclasses import replace
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.sampler import NeighborSampler

from ..graphs.pairs import PairIndex
from ..graphs.sparse import expand_runs
from .batch import BPRBatch
from .neighbor import (
    EDGE_TYPE,
    REV_EDGE_TYPE,
    NegativeFn,
    NeighborSource,
    ReplaceNegatives,
    to_bpr_batch,
)

#: The edge type of each side's same-type relation in the sampled graph.
RELATION_TYPES = {'user': ('user', 'co', 'user'),
                  'item': ('item', 'co', 'item')}


class Relation:
    r"""A same-type relation of one side: the entries :math:`(i, j)` of a
    CSR matrix :obj:`adj` :obj:`[n, n]` (node :math:`i` aggregates node
    :math:`j`), sampled :obj:`num_neighbors` entries per node and hop
    (:obj:`-1`: all), for :obj:`hops` hops beyond the user-item ones.

    In the sampled graph entry :math:`e` (its position among
    :obj:`adj`'s stored values) is the edge :math:`j \to i` with
    :obj:`e_id` :math:`e`: PyG samples the incoming edges of a node, so
    the sampled edges of a node are entries of its row.
    """
    def __init__(self, adj: Tensor, num_neighbors: int, hops: int = 1):
        if adj.layout != torch.sparse_csr:
            raise ValueError("a relation's 'adj' must be a CSR tensor")
        if num_neighbors == 0 or num_neighbors < -1:
            raise ValueError(f"a relation's num_neighbors must be positive "
                             f"or -1 (all), got {num_neighbors}")
        if hops < 1:
            raise ValueError(f"a relation's hops must be positive, got "
                             f"{hops}")
        self.crow = adj.crow_indices().to(torch.long)
        self.col = adj.col_indices().to(torch.long)
        self.num_neighbors, self.hops = int(num_neighbors), int(hops)

    def edge_index(self) -> Tensor:
        r"""The PyG edges :math:`j \to i` :obj:`[2, nnz]`, in stored
        order."""
        row = torch.arange(self.crow.numel() - 1).repeat_interleave(
            self.crow[1:] - self.crow[:-1])
        return torch.stack([self.col, row])

    def sample_rows(self, nodes: Tensor) -> Tuple[Tensor, Tensor]:
        r"""Up to :obj:`num_neighbors` entries of the rows :obj:`nodes`
        (global ids), uniformly without replacement (from the global random
        number generator): :obj:`(run, e_id)`, the position in
        :obj:`nodes` of each entry's row and the entry."""
        start = self.crow[nodes]
        run, at = expand_runs(start, self.crow[nodes + 1] - start)
        if self.num_neighbors < 0 or at.numel() == 0:
            return run, at
        # A random rank within each row: sort by (row, random key).
        key = torch.rand(at.numel(), dtype=torch.float64)
        order = torch.argsort(run.to(torch.float64) + key)
        first = torch.searchsorted(run[order], run[order], right=False)
        keep = order[torch.arange(order.numel()) - first <
                     self.num_neighbors]
        keep = keep.sort().values
        return run[keep], at[keep]


class AddRelationNeighbors:
    r"""Adds to a sampled batch the relation neighbourhood of given nodes
    that have none (the true negatives that
    :class:`~pyg_mmrec.loader.ReplaceNegatives` appends after sampling,
    or that the sampler reached at its last hop): for :obj:`hops` hops, up
    to :obj:`num_neighbors` entries of their rows of the relation, with
    the new neighbours appended to :obj:`n_id`."""
    def __init__(self, node_type: str, relation: Relation):
        self.node_type, self.relation = node_type, relation
        self.edge_type = RELATION_TYPES[node_type]

    def __call__(self, batch: HeteroData, nodes: Tensor) -> None:
        r"""Adds the neighbourhood of the local :obj:`nodes` without
        sampled entries."""
        store, edges = batch[self.node_type], batch[self.edge_type]
        frontier = nodes.unique()
        frontier = frontier[~torch.isin(frontier, edges.edge_index[1])]
        for _ in range(self.relation.hops):
            if frontier.numel() == 0:
                return
            run, e_id = self.relation.sample_rows(store.n_id[frontier])
            neighbour = self.relation.col[e_id]
            n_id = store.n_id
            order = torch.argsort(n_id)
            at = torch.searchsorted(n_id[order], neighbour).clamp_(
                max=n_id.numel() - 1)
            found = n_id[order[at]] == neighbour
            new, inverse = torch.unique(neighbour[~found],
                                        return_inverse=True)
            local = order[at]
            local[~found] = n_id.numel() + inverse
            store.n_id = torch.cat([n_id, new])
            store.num_nodes = store.n_id.numel()
            edges.edge_index = torch.cat(
                [edges.edge_index, torch.stack([local, frontier[run]])], 1)
            edges.e_id = torch.cat([edges.e_id, e_id])
            frontier = torch.arange(n_id.numel(), store.n_id.numel())


def to_relation_bpr_batch(batch: HeteroData) -> BPRBatch:
    r""":func:`~pyg_mmrec.loader.to_bpr_batch` with the sampled relation
    edges in the subgraph: :obj:`user_edge_index` / :obj:`item_edge_index`
    (entries :math:`(i, j)` in local ids) and their :obj:`e_id`."""
    out = to_bpr_batch(batch)
    fields = {}
    for side, edge_type in RELATION_TYPES.items():
        if edge_type in batch.edge_types:
            store = batch[edge_type]
            fields[f'{side}_edge_index'] = store.edge_index.flip(0)
            fields[f'{side}_edge_id'] = store.e_id
    return out.with_subgraph(replace(out.subgraph, **fields))


class _RelationTransform:
    # The loader's transform (a class, so that workers can pickle it).
    def __init__(self, replace_negatives: Optional[ReplaceNegatives],
                 add_item_neighbors: Optional[AddRelationNeighbors]):
        self.replace = replace_negatives
        self.add_item_neighbors = add_item_neighbors

    def __call__(self, batch: HeteroData) -> BPRBatch:
        if self.replace is not None:
            batch = self.replace(batch)
            if self.add_item_neighbors is not None:
                self.add_item_neighbors(batch, batch['item'].dst_neg_index)
        return to_relation_bpr_batch(batch)


class RelationNeighborSource(NeighborSource):
    r""":class:`~pyg_mmrec.loader.NeighborSource` over a heterogeneous graph
    with same-type relations: besides the training interactions (both
    directions, :obj:`num_neighbors` per hop), each side's
    :class:`Relation` in :obj:`relations` (:obj:`"user"`, :obj:`"item"`)
    is an edge type :obj:`(side, co, side)` sampled with its own fan-out.

    With :math:`H` user-item hops and relations of at most :math:`h` hops,
    the sampler runs :math:`H + h` hops: the user-item edges in the first
    :math:`H` (none after), the relations in all of them, so that every
    node reached by the user-item hops gets its relation neighbourhood.
    The true negatives that :class:`~pyg_mmrec.loader.ReplaceNegatives`
    appends get theirs from :class:`AddRelationNeighbors` (their user-item
    edges to the sampled users, as in :class:`NeighborSource`). The
    batches' :class:`~pyg_mmrec.loader.Subgraph` carries the sampled
    relation entries (:obj:`user_edge_index`, :obj:`user_edge_id`, ...).

    Args:
        graph (PairIndex): The training graph.
        batch_size (int): Triples per batch.
        relations (Mapping[str, Relation]): The relations by side.
        num_neighbors, negatives, shard, exclude, num_workers: As
            :class:`NeighborSource`.
    """
    def __init__(self, graph: PairIndex, batch_size: int,
                 relations: Mapping[str, Relation],
                 num_neighbors: Union[str, Sequence[int]] = (10, 10),
                 negatives: Union[str, NegativeFn] = 'uniform',
                 shard: tuple = (0, 1), exclude: Optional[PairIndex] = None,
                 num_workers: int = 0):
        unknown = set(relations) - set(RELATION_TYPES)
        if unknown:
            raise ValueError(f"relations are per side {tuple(RELATION_TYPES)}"
                             f", got {sorted(unknown)}")
        super().__init__(graph, batch_size, num_neighbors, negatives,
                         shard=shard, exclude=exclude,
                         num_workers=num_workers)
        self.relations = dict(relations)
        hops = self.num_neighbors
        extra = max((r.hops for r in self.relations.values()), default=0)
        fanout: Dict[tuple, list] = {
            EDGE_TYPE: hops + [0] * extra, REV_EDGE_TYPE: hops + [0] * extra}
        for side, relation in self.relations.items():
            edge_type = RELATION_TYPES[side]
            self.data[edge_type].edge_index = relation.edge_index()
            fanout[edge_type] = [relation.num_neighbors] * (len(hops) +
                                                            extra)
        #: The fan-out of every edge type per hop (the loader's).
        self.fanout = fanout
        with warnings.catch_warnings():  # "without pyg-lib is deprecated"
            warnings.filterwarnings('ignore', message='.*pyg-lib.*')
            self.sampler = NeighborSampler(self.data, fanout)
        replace_negatives = self.transform.replace
        item = self.relations.get('item')
        self.transform = _RelationTransform(
            replace_negatives,
            None if item is None else AddRelationNeighbors('item', item))

    def __repr__(self) -> str:
        sides = ', '.join(f'{side}={r.num_neighbors}x{r.hops}'
                          for side, r in self.relations.items())
        return f'{super().__repr__()[:-1]}, relations=({sides}))'
