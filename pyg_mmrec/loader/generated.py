r"""Mini-batch training on sampled subgraphs with further user-item graphs
that change between epochs (the DiffMM family's generated graphs): a
heterogeneous neighbour sampler over the training interactions and, per
graph, its user rows and its item rows as two more edge types, rebuilt from
the graphs as they are when an epoch's batches start."""
import warnings
from dataclasses import replace
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.sampler import NeighborSampler

from ..graphs.pairs import PairIndex
from ..graphs.sparse import expand_runs
from .batch import BPRBatch, positions_in
from .neighbor import (
    EDGE_TYPE,
    REV_EDGE_TYPE,
    NegativeFn,
    NeighborSource,
    ReplaceNegatives,
    to_bpr_batch,
)


def entry_edge_types(name: str) -> Tuple[tuple, tuple]:
    r"""The edge types of graph :obj:`name` in the sampled graph:
    :obj:`(item, name, user)` for the entries of its user rows (user
    :math:`u` aggregates item :math:`i`: the edge :math:`i \to u`) and
    :obj:`(user, name, item)` for those of its item rows."""
    return ('item', name, 'user'), ('user', name, 'item')


class UserItemEntries:
    r"""The user-item entries of a square CSR matrix :obj:`adj`
    :obj:`[U + I, U + I]` (users first, item :math:`i` is node
    :math:`U + i`, e.g. a generated graph of
    :func:`~pyg_mmrec.graphs.generated_adjacency`) as the PyG edges of
    :obj:`entry_edge_types`, each with its position among :obj:`adj`'s
    stored values. Other entries (the diagonal, user-user or item-item
    ones) are not sampled: a model adds the diagonal of every sampled node
    itself."""
    def __init__(self, adj: Tensor, num_users: int):
        if adj.layout != torch.sparse_csr or adj.size(0) != adj.size(1):
            raise ValueError(f"a sampled graph must be a square CSR matrix "
                             f"over users and items, got {adj.layout} "
                             f"{tuple(adj.shape)}")
        self.crow = adj.crow_indices().to(torch.long)
        self.col = adj.col_indices().to(torch.long)
        self.num_users = num_users
        row = torch.arange(adj.size(0)).repeat_interleave(
            self.crow[1:] - self.crow[:-1])
        is_user_row = row < num_users
        #: The positions of the entries of the user rows (whose columns are
        #: items) and of the item rows (whose columns are users), in stored
        #: order.
        self.user_rows = (is_user_row & (self.col >= num_users)).nonzero(
            ).view(-1)
        self.item_rows = (~is_user_row & (self.col < num_users)).nonzero(
            ).view(-1)
        self._row = row

    def edge_indices(self) -> Tuple[Tensor, Tensor]:
        r"""The PyG edges :obj:`[2, E]` of both edge types (source, then
        target node, per type), edge :math:`e` of a type being the entry
        at :obj:`user_rows[e]` (:obj:`item_rows[e]`)."""
        U, row, col = self.num_users, self._row, self.col
        at = self.user_rows
        user_rows = torch.stack([col[at] - U, row[at]])
        at = self.item_rows
        return user_rows, torch.stack([col[at], row[at] - U])

    def item_row_entries(self, items: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The entries of the rows of :obj:`items` (global item ids) whose
        column is a user: :obj:`(run, position)`, the position in
        :obj:`items` of each entry's row and the entry."""
        nodes = items + self.num_users
        start = self.crow[nodes]
        run, at = expand_runs(start, self.crow[nodes + 1] - start)
        keep = self.col[at] < self.num_users
        return run[keep], at[keep]


class AddItemRowEntries:
    r"""Adds to a batch, for items appended after sampling (the true
    negatives of :class:`~pyg_mmrec.loader.ReplaceNegatives`), the
    entries of their rows of each graph whose column is a user of the
    subgraph: they see the sampled users only, as with their training
    edges."""
    def __init__(self, graphs: Mapping[str, UserItemEntries]):
        self.graphs = dict(graphs)

    def __call__(self, batch: HeteroData, first: int) -> None:
        r"""Adds the entries of the local items :obj:`first` and after."""
        item_id = batch['item'].n_id
        if first >= item_id.numel():
            return
        new = torch.arange(first, item_id.numel())
        for name, graph in self.graphs.items():
            run, at = graph.item_row_entries(item_id[new])
            user, found = positions_in(batch['user'].n_id, graph.col[at])
            store = batch[entry_edge_types(name)[1]]
            store.edge_index = torch.cat([store.edge_index, torch.stack(
                [user[found], new[run[found]]])], dim=1)
            store.position = torch.cat([store.position, at[found]])


def to_entry_bpr_batch(batch: HeteroData,
                       names: Sequence[str]) -> BPRBatch:
    r""":func:`~pyg_mmrec.loader.to_bpr_batch` with each graph's sampled
    entries in :obj:`subgraph.graph_entries[name]`: :obj:`(index,
    position)`, the entries :math:`(r, c)` :obj:`[2, E]` in the subgraph's
    node positions (users :math:`0, \ldots, N_u - 1`, then the items) and
    their positions among the graph's stored values :obj:`[E]`."""
    out = to_bpr_batch(batch)
    num_users = batch['user'].n_id.numel()
    entries = {}
    for name in names:
        user_rows, item_rows = (batch[t] for t in entry_edge_types(name))
        item, user = user_rows.edge_index  # edges item -> user
        index = [torch.stack([user, item + num_users])]
        user, item = item_rows.edge_index  # edges user -> item
        index.append(torch.stack([item + num_users, user]))
        entries[name] = (torch.cat(index, dim=1),
                         torch.cat([user_rows.position, item_rows.position]))
    return out.with_subgraph(replace(out.subgraph, graph_entries=entries))


class _EntryTransform:
    # The loader's transform (a class, so that workers can pickle it).
    def __init__(self, replace_negatives: Optional[ReplaceNegatives],
                 graphs: Mapping[str, UserItemEntries]):
        self.replace = replace_negatives
        self.graphs = dict(graphs)
        self.add_entries = AddItemRowEntries(graphs)

    def __call__(self, batch: HeteroData) -> BPRBatch:
        for name, graph in self.graphs.items():
            for edge_type, at in zip(entry_edge_types(name),
                                     (graph.user_rows, graph.item_rows)):
                batch[edge_type].position = at[batch[edge_type].e_id]
        if self.replace is not None:
            first = batch['item'].n_id.numel()
            batch = self.replace(batch)
            self.add_entries(batch, first)
        return to_entry_bpr_batch(batch, list(self.graphs))


class GeneratedGraphNeighborSource(NeighborSource):
    r""":class:`~pyg_mmrec.loader.NeighborSource` over the training
    interactions and further user-item graphs read once per epoch (the
    DiffMM family's generated graphs, regenerated before every epoch's
    batches): :obj:`epoch_graphs()` returns each graph by name, a square
    CSR matrix :obj:`[U + I, U + I]`, when an epoch's batches start, and
    its user rows and item rows become the edge types
    :obj:`entry_edge_types` of that epoch's sampled graph.

    **Hops**: the fan-out list :obj:`num_neighbors` gives the number of
    hops :math:`H` and, per hop, the neighbours each node samples of every
    edge type: training items or users, and entries of each graph's row
    (a node reached by any edge type samples all of them at the next hop).
    The batches' :class:`~pyg_mmrec.loader.Subgraph` carries the sampled
    entries with their positions among the graph's stored values
    (:obj:`graph_entries`), so that a model propagates with the full
    graph's weights. The true negatives that
    :class:`~pyg_mmrec.loader.ReplaceNegatives` appends get their
    training edges and their rows' entries to the subgraph's users.

    Args:
        graph (PairIndex): The training graph.
        batch_size (int): Triples per batch.
        epoch_graphs (callable): Returns the graphs by name (always the
            same names), read when an epoch's batches start.
        num_neighbors, negatives, shard, exclude, num_workers: As
            :class:`NeighborSource`.
    """
    def __init__(self, graph: PairIndex, batch_size: int,
                 epoch_graphs: Callable[[], Mapping[str, Tensor]],
                 num_neighbors: Union[str, Sequence[int]] = (10, 10),
                 negatives: Union[str, NegativeFn] = 'uniform',
                 shard: tuple = (0, 1), exclude: Optional[PairIndex] = None,
                 num_workers: int = 0):
        super().__init__(graph, batch_size, num_neighbors, negatives,
                         shard=shard, exclude=exclude,
                         num_workers=num_workers)
        self.epoch_graphs = epoch_graphs
        self.replace_negatives = self.transform.replace
        #: This epoch's graphs (set when its batches start).
        self.graphs: Dict[str, UserItemEntries] = {}

    def epoch_sampling(self) -> Tuple[HeteroData, NeighborSampler,
                                      _EntryTransform]:
        r"""This epoch's sampled graph, its sampler and the loader's
        transform, from the graphs :obj:`epoch_graphs()` returns now."""
        self.graphs = {name: UserItemEntries(adj.cpu(), self.graph.num_users)
                       for name, adj in self.epoch_graphs().items()}
        data = HeteroData()
        data['user'].num_nodes = self.graph.num_users
        data['item'].num_nodes = self.graph.num_items
        data[EDGE_TYPE].edge_index = self.graph.edge_index
        data[REV_EDGE_TYPE].edge_index = self.graph.edge_index.flip(0)
        for name, entries in self.graphs.items():
            for edge_type, index in zip(entry_edge_types(name),
                                        entries.edge_indices()):
                data[edge_type].edge_index = index
        fanout = {edge_type: self.num_neighbors
                  for edge_type in data.edge_types}
        with warnings.catch_warnings():  # "without pyg-lib is deprecated"
            warnings.filterwarnings('ignore', message='.*pyg-lib.*')
            sampler = NeighborSampler(data, fanout)
        return data, sampler, _EntryTransform(self.replace_negatives,
                                              self.graphs)

    def loader(self, edge_label_index: Tensor, seed: int,
               transform: Optional[Callable] = None):
        r"""As :meth:`NeighborSource.loader`, over this epoch's graphs
        (:meth:`epoch_sampling`)."""
        self.data, self.sampler, self.transform = self.epoch_sampling()
        return super().loader(edge_label_index, seed, transform)

    def __repr__(self) -> str:
        return f'{super().__repr__()[:-1]}, graphs={list(self.graphs)})'
