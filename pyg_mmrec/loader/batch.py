r"""The training batch every model's :meth:`forward` takes: (user, positive,
negative) ids and, optionally, the sampled subgraph they live in."""
from dataclasses import dataclass, replace
from typing import Mapping, Optional, Tuple

import torch
from torch import Tensor

from ..graphs.pairs import PairIndex


@dataclass(frozen=True)
class Subgraph:
    r"""A sampled user-item subgraph with local node ids.

    Args:
        user_id (torch.Tensor): Global ids of its users :obj:`[N_u]` (PyG's
            :obj:`n_id` of the user nodes), distinct.
        item_id (torch.Tensor): Global ids of its items :obj:`[N_i]`,
            distinct.
        edge_index (torch.Tensor): Its training (user, item) edges in local
            ids :obj:`[2, E]` (row: position in :obj:`user_id`, column:
            position in :obj:`item_id`).
        user_edge_index (torch.Tensor, optional): Sampled entries
            :math:`(u, v)` of a user-user graph :obj:`[2, E_uu]` in local
            ids: user :obj:`u` aggregates user :obj:`v` (e.g. REARM's
            homography graph). (default: :obj:`None`, none sampled)
        user_edge_id (torch.Tensor, optional): Their positions :obj:`[E_uu]`
            among that graph's stored entries (its CSR values), where their
            weights are. (default: :obj:`None`)
        item_edge_index (torch.Tensor, optional): Likewise for an item-item
            graph :obj:`[2, E_ii]`. (default: :obj:`None`)
        item_edge_id (torch.Tensor, optional): :obj:`[E_ii]`.
            (default: :obj:`None`)
        graph_entries (Mapping[str, (Tensor, Tensor)], optional): Sampled
            entries of further graphs over the users and items, by name
            (e.g. the DiffMM family's generated graphs): :obj:`(index,
            position)`, the entries :math:`(r, c)` :obj:`[2, E]` (row
            :math:`r` aggregates column :math:`c`) in node positions, users
            :math:`0, \ldots, N_u - 1` then items :math:`N_u, \ldots`, and
            their positions :obj:`[E]` among the graph's stored CSR values.
            (default: :obj:`None`, none sampled)
    """
    user_id: Tensor
    item_id: Tensor
    edge_index: Tensor
    user_edge_index: Optional[Tensor] = None
    user_edge_id: Optional[Tensor] = None
    item_edge_index: Optional[Tensor] = None
    item_edge_id: Optional[Tensor] = None
    graph_entries: Optional[Mapping[str, Tuple[Tensor, Tensor]]] = None

    @property
    def num_users(self) -> int:
        return self.user_id.numel()

    @property
    def num_items(self) -> int:
        return self.item_id.numel()

    def to(self, device) -> 'Subgraph':
        entries = None if self.graph_entries is None else {
            name: (index.to(device), position.to(device))
            for name, (index, position) in self.graph_entries.items()}
        return Subgraph(*(None if t is None else t.to(device) for t in
                          (self.user_id, self.item_id, self.edge_index,
                           self.user_edge_index, self.user_edge_id,
                           self.item_edge_index, self.item_edge_id)),
                        graph_entries=entries)

    @staticmethod
    def induced(graph: PairIndex, user_id: Tensor,
                item_id: Tensor) -> 'Subgraph':
        r"""The subgraph of :obj:`graph` induced by the given users and
        items (every pair of :obj:`graph` between them)."""
        user_id, item_id = user_id.long(), item_id.long()
        user_pos = torch.full((graph.num_users, ), -1, dtype=torch.long,
                              device=user_id.device)
        item_pos = torch.full((graph.num_items, ), -1, dtype=torch.long,
                              device=item_id.device)
        user_pos[user_id] = torch.arange(user_id.numel(),
                                         device=user_id.device)
        item_pos[item_id] = torch.arange(item_id.numel(),
                                         device=item_id.device)
        row, col = user_pos[graph.edge_index[0]], item_pos[graph.edge_index[1]]
        keep = (row >= 0) & (col >= 0)
        return Subgraph(user_id, item_id, torch.stack([row[keep], col[keep]]))


def positions_in(ids: Tensor, query: Tensor) -> Tuple[Tensor, Tensor]:
    r"""The positions of :obj:`query` among the distinct, non-empty
    :obj:`ids` (global ids to a subgraph's local ones), and whether each
    is there (where not, the position is meaningless)."""
    order = torch.argsort(ids)
    at = order[torch.searchsorted(ids[order], query).clamp_(
        max=ids.numel() - 1)]
    return at, ids[at] == query


def _local(ids: Tensor, query: Tensor, what: str) -> Tensor:
    at, found = positions_in(ids, query)
    if not bool(found.all()):
        raise ValueError(f"the subgraph lacks some of the batch's {what}")
    return at


@dataclass(frozen=True)
class BPRBatch:
    r"""A batch of :obj:`[B]` (user, positive item, negative item) triples,
    or of (user, positive item) pairs with :obj:`neg` :obj:`None` (a
    negative-free recipe, *e.g.* BM3).

    The ids are global. With a :obj:`subgraph` (mini-batch training), the
    model encodes that subgraph instead of the full training graph and
    reads the batch's nodes at their local positions :meth:`node_index`.

    Example:
        >>> batch = BPRBatch(torch.tensor([0, 1]), torch.tensor([3, 4]),
        ...                  torch.tensor([5, 2]))
        >>> user_emb, item_emb = model.encode(batch.subgraph)
        >>> u, p, n = batch.node_index()  # global ids: no subgraph
    """
    user: Tensor
    pos: Tensor
    neg: Optional[Tensor]
    subgraph: Optional[Subgraph] = None
    #: Optional per-row "intervention" items (MCLN's counterfactual inputs:
    #: uninteracted items drawn independently of :obj:`neg`).
    intervention: Optional[Tensor] = None

    def __len__(self) -> int:
        return self.user.numel()

    def to(self, device) -> 'BPRBatch':
        return BPRBatch(self.user.to(device), self.pos.to(device),
                        None if self.neg is None else self.neg.to(device),
                        None if self.subgraph is None else
                        self.subgraph.to(device),
                        None if self.intervention is None else
                        self.intervention.to(device))

    def with_subgraph(self, subgraph: Subgraph) -> 'BPRBatch':
        r"""This batch on :obj:`subgraph`, which must hold its nodes."""
        return replace(self, subgraph=subgraph)

    def node_index(self) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The rows of the batch's users, positives and negatives in the
        embeddings of :meth:`Recommender.encode(batch.subgraph)
        <pyg_mmrec.models.Recommender.encode>`: global ids without a
        subgraph, local positions with one."""
        sub = self.subgraph
        if sub is None:
            return self.user, self.pos, self.neg
        return (_local(sub.user_id, self.user, 'users'),
                _local(sub.item_id, self.pos, 'positive items'),
                None if self.neg is None else
                _local(sub.item_id, self.neg, 'negative items'))

    def intervention_index(self) -> Tensor:
        r"""The rows of the batch's intervention items, as
        :meth:`node_index` (raises if the batch has none)."""
        if self.intervention is None:
            raise ValueError("the batch has no intervention items")
        if self.subgraph is None:
            return self.intervention
        return _local(self.subgraph.item_id, self.intervention,
                      'intervention items')
