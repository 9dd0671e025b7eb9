r"""REARM's parts: the choice of its two channels, its fixed feature
tables, and the homography propagation on a sampled subgraph."""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ..graphs.pairs import PairIndex
from ..graphs.sparse import csr_transpose, expand_runs
from ..loader import Relation, RelationNeighborSource, Subgraph

_COUNT_WORDS = ('none', 'one', 'two', 'three', 'four', 'five')


def _count(n: int) -> str:
    return _COUNT_WORDS[n] if n < len(_COUNT_WORDS) else str(n)


def channel_modalities(available: Sequence[str],
                       chosen: Optional[Sequence[str]] = None,
                       dataset: str = '?') -> Tuple[str, str]:
    r"""REARM's :obj:`(visual, textual)` channels among the dataset's item
    modalities :obj:`available` (in canonical order): the two of
    :obj:`chosen`, or the dataset's only two when :obj:`chosen` is
    :obj:`None`; of the two, :obj:`"image"` is the visual channel, else
    the first (in :obj:`chosen`'s order, or the canonical one). Raises a
    :class:`ValueError` naming the modalities when there are fewer than
    two, or more than two and :obj:`chosen` does not pick two of them.
    """
    available = list(available)
    has = ', '.join(available)
    if len(available) < 2:
        raise ValueError(
            f"REARM needs at least two item modalities (it pairs two "
            f"modalities as its visual and textual channels); the dataset "
            f"'{dataset}' has {_count(len(available))}: {has}")
    if chosen is None:
        if len(available) > 2:
            raise ValueError(
                f"REARM pairs two modalities as its visual and textual "
                f"channels, and the dataset '{dataset}' has "
                f"{_count(len(available))}: {has}; choose two with the "
                f"model setting 'modalities', e.g. modalities="
                f"{available[:2]} (--modalities "
                f"'[{', '.join(available[:2])}]' on the command line)")
        chosen = available
    chosen = [chosen] if isinstance(chosen, str) else list(chosen)
    if len(chosen) != 2 or len(set(chosen)) != 2:
        raise ValueError(f"REARM's 'modalities' must name two different "
                         f"modalities (got {chosen})")
    missing = [m for m in chosen if m not in available]
    if missing:
        raise ValueError(f"REARM's 'modalities' names {missing}, which the "
                         f"dataset '{dataset}' lacks (it has: {has})")
    visual = 'image' if 'image' in chosen else chosen[0]
    return visual, next(m for m in chosen if m != visual)


def row_neighbourhood(adj: Tensor, nodes: Tensor, hops: int
                      ) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The :obj:`hops`-hop row neighbourhood of :obj:`nodes` (global ids,
    distinct) in a CSR matrix :obj:`adj` :obj:`[n, n]`: every entry of the
    rows of the nodes within :obj:`hops - 1` hops, so that :obj:`hops`
    propagations over these entries give the nodes' rows of
    :math:`\mathbf{A}^{hops} \mathbf{X}` exactly.

    Returns:
        (ids, edge_index, edge_id): the nodes' and their neighbours' global
        ids :obj:`[N']` (:obj:`nodes` first), the entries :math:`(i, j)`
        in positions of :obj:`ids` :obj:`[2, E]` and their positions among
        :obj:`adj`'s values :obj:`[E]`.
    """
    crow, col = adj.crow_indices().long(), adj.col_indices().long()
    nodes = nodes.long()
    local = torch.full((adj.size(0), ), -1, dtype=torch.long,
                       device=nodes.device)
    local[nodes] = torch.arange(nodes.numel(), device=nodes.device)
    ids, frontier = nodes, torch.arange(nodes.numel(), device=nodes.device)
    rows, cols, entries = [], [], []
    for _ in range(hops):
        start = crow[ids[frontier]]
        run, at = expand_runs(start, crow[ids[frontier] + 1] - start)
        neighbour = col[at]
        new = torch.unique(neighbour[local[neighbour] < 0])
        local[new] = torch.arange(ids.numel(), ids.numel() + new.numel(),
                                  device=nodes.device)
        rows.append(frontier[run])
        cols.append(local[neighbour])
        entries.append(at)
        frontier = torch.arange(ids.numel(), ids.numel() + new.numel(),
                                device=nodes.device)
        ids = torch.cat([ids, new])
    empty = nodes.new_empty(0)
    return (ids, torch.stack([torch.cat(rows or [empty]),
                              torch.cat(cols or [empty])]),
            torch.cat(entries or [empty]))


def propagate_entries(x: Tensor, edge_index: Tensor, weight: Tensor,
                      hops: int) -> Tensor:
    r""":obj:`hops` times :math:`\mathbf{x}_i \leftarrow \sum_{(i, j)}
    w_{ij} \mathbf{x}_j` over the entries :obj:`edge_index` :obj:`[2, E]`
    (local ids) with weights :obj:`weight` :obj:`[E]`; a node without
    entries gets a zero row."""
    row, col = edge_index
    weight = weight.to(x.dtype).unsqueeze(-1)
    for _ in range(hops):
        x = x.new_zeros(x.shape).index_add(0, row, weight * x[col])
    return x


class SubgraphParts:
    r"""REARM's mini-batch parts (a mixin of
    :class:`~pyg_mmrec.models.REARM`, see its "Mini-batch training"): the
    homography on a subgraph, the meta-network's means over every node
    and the heterogeneous neighbour source."""
    def graph_transpose(self, name: str) -> Optional[Tensor]:
        r"""The transpose of the homography graph :obj:`name` for the
        backward pass of a full-graph propagation, built on first need and
        kept (on the graph's device); :obj:`None` without gradient. A
        mini-batch run (its subgraphs read the graphs' entries) and an
        evaluation never build it: at 1M users it is 1 GB."""
        if not torch.is_grad_enabled():
            return None
        adj = getattr(self, name)
        cache = self.__dict__.setdefault('_graph_transposes', {})
        adj_t = cache.get(name)
        if adj_t is None or adj_t.device != adj.device:
            adj_t = cache[name] = csr_transpose(adj)
        return adj_t

    def _inputs(self, side: str, ids: Tensor) -> Tensor:
        # [E | projected features] of the given nodes of a side.
        if side == 'user':
            emb, lins, tables = (self.user_embedding, self.user_projections,
                                 self.user_features)
        else:
            emb, lins, tables = (self.item_embedding, self.item_projections,
                                 self.item_features)
        return torch.cat([emb(ids), *[lin(x[ids]) for lin, x in
                                      zip(lins, tables)]], dim=1)

    def subgraph_homography(self, side: str, subgraph: Subgraph
                            ) -> Tuple[Tensor, ...]:
        r"""The homography outputs of :obj:`subgraph`'s users or items
        (:obj:`side`): its sampled entries of the side's graph with their
        full-graph weights, or, without sampled entries, the whole rows of
        its nodes (:func:`~pyg_mmrec.models.rearm_parts.row_neighbourhood`,
        exact)."""
        ids = subgraph.user_id if side == 'user' else subgraph.item_id
        adj = self.user_graph if side == 'user' else self.item_graph
        hops = self.num_user_hops if side == 'user' else self.num_item_hops
        edge_index = getattr(subgraph, f'{side}_edge_index')
        edge_id = getattr(subgraph, f'{side}_edge_id')
        nodes = ids
        if edge_index is None:
            nodes, edge_index, edge_id = row_neighbourhood(adj, ids, hops)
        x = propagate_entries(self._inputs(side, nodes), edge_index,
                              adj.values()[edge_id], hops)[:ids.numel()]
        return F.normalize(x, dim=1).split(self.embedding_dim, dim=1)

    def meta_means(self) -> Tuple[Tuple[Tensor, Tensor], ...]:
        r"""The user and item meta-networks' means over every node (no
        gradient), computed once until the model trains or loads a
        state."""
        if self._meta_means is None:
            with torch.no_grad():
                m, _ = self.channels()
                U = self.num_users
                self._meta_means = (self.user_meta.template_means(m[:U]),
                                    self.item_meta.template_means(m[U:]))
        return self._meta_means

    def train(self, mode: bool = True):
        self._meta_means = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._meta_means = None
        return super().load_state_dict(*args, **kwargs)

    def neighbor_source(self, graph: PairIndex, batch_size: int, *,
                        num_neighbors: Union[str, Sequence[int]] = '10,10',
                        negatives: str = 'uniform',
                        shard: Tuple[int, int] = (0, 1),
                        exclude: Optional[PairIndex] = None,
                        num_workers: int = 0) -> RelationNeighborSource:
        r"""Mini-batches on subgraphs sampled over the interactions
        (:obj:`num_neighbors` per hop) and the homography graphs
        (:obj:`homography_neighbors` per hop, for :obj:`num_user_hops` /
        :obj:`num_item_hops` hops beyond): a
        :class:`~pyg_mmrec.loader.RelationNeighborSource`; the other
        arguments are those of :class:`~pyg_mmrec.loader.NeighborSource`.
        """
        relations = {}
        for side, adj, hops in (
                ('user', self.user_graph, self.num_user_hops),
                ('item', self.item_graph, self.num_item_hops)):
            if hops > 0:
                relations[side] = Relation(
                    adj.cpu(), self.homography_neighbors[side], hops)
        return RelationNeighborSource(
            graph, batch_size, relations, num_neighbors=num_neighbors,
            negatives=negatives, shard=shard, exclude=exclude,
            num_workers=num_workers)
