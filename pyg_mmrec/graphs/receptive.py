r"""The receptive field of a few rows under a multi-hop propagation, as
row blocks of a symmetric sparse matrix, so that a propagation computes
those rows only (e.g. the users and items of one batch) instead of every
node."""
from typing import List, NamedTuple

import torch
from torch import Tensor

from .sparse import csr_from_counts, expand_runs


class ReceptiveField(NamedTuple):
    r"""The nodes and row blocks that :math:`L` hops of a symmetric
    :math:`\mathbf{A}` need to compute the rows :math:`\mathcal{S}_0` of
    :math:`\mathbf{A}^{l}\mathbf{X}`, :math:`l = 0, \ldots, L` (see
    :func:`receptive_field`).

    Attributes:
        nodes (List[torch.Tensor]): :math:`\mathcal{S}_0 \subseteq \ldots
            \subseteq \mathcal{S}_L`, sorted node ids, with
            :math:`\mathcal{S}_{h+1} = \mathcal{S}_h \cup
            \mathcal{N}(\mathcal{S}_h)`. Layer :math:`l` is needed on
            :math:`\mathcal{S}_{L-l}`, the input on :math:`\mathcal{S}_L`.
        blocks (List[torch.Tensor]): :obj:`blocks[h]` is
            :math:`\mathbf{A}[\mathcal{S}_h, \mathcal{S}_{h+1}]` in CSR,
            rows and columns numbered by their position in
            :obj:`nodes[h]` and :obj:`nodes[h + 1]`.
        blocks_t (List[torch.Tensor]): Their transposes
            :math:`\mathbf{A}[\mathcal{S}_{h+1}, \mathcal{S}_h]` in CSR (for
            the backward pass).
        targets (List[torch.Tensor]): :obj:`targets[h]` is the position of
            every node of :math:`\mathcal{S}_0` in :obj:`nodes[h]`.
        index (torch.Tensor): The position in :math:`\mathcal{S}_0` of
            every requested row, in the order requested.
    """
    nodes: List[Tensor]
    blocks: List[Tensor]
    blocks_t: List[Tensor]
    targets: List[Tensor]
    index: Tensor


def receptive_field(adj: Tensor, rows: Tensor,
                    num_hops: int) -> ReceptiveField:
    r"""The receptive field of :obj:`rows` under :obj:`num_hops` hops of a
    symmetric CSR matrix :math:`\mathbf{A}` (e.g. a normalised user-item
    adjacency): the sets :math:`\mathcal{S}_0 = \mathrm{rows}`,
    :math:`\mathcal{S}_{h+1} = \mathcal{S}_h \cup
    \mathcal{N}(\mathcal{S}_h)` and the blocks
    :math:`\mathbf{A}[\mathcal{S}_h, \mathcal{S}_{h+1}]`, so that

    .. math::
        (\mathbf{A}^{l}\mathbf{X})[\mathcal{S}_{L-l}] =
        \mathbf{A}[\mathcal{S}_{L-l}, \mathcal{S}_{L-l+1}] \,
        (\mathbf{A}^{l-1}\mathbf{X})[\mathcal{S}_{L-l+1}]

    holds exactly (every row of a block keeps all its entries, in the same
    order, so each output row is the same sum as in the full product).
    Costs :math:`O(\text{entries of the rows of } \mathcal{S}_L)` index
    operations and one boolean mask over the nodes, nothing per feature.

    Args:
        adj (torch.Tensor): A symmetric :obj:`torch.sparse_csr` matrix
            :obj:`[N, N]`.
        rows (torch.Tensor): The rows wanted :obj:`[R]` (repeats allowed).
        num_hops (int): :math:`L \ge 0`.

    Returns:
        :class:`ReceptiveField`
    """
    if num_hops < 0:
        raise ValueError(f"'num_hops' must be non-negative (got {num_hops})")
    crow, col = adj.crow_indices().long(), adj.col_indices().long()
    value, device, num_nodes = adj.values(), crow.device, adj.size(0)
    degree = crow[1:] - crow[:-1]
    rows = rows.to(device, torch.long)
    # The first hop h at which a node joins S_h (num_hops + 1: never).
    joined = torch.full((num_nodes, ), num_hops + 1, dtype=torch.long,
                        device=device)
    joined[rows] = 0
    nodes = [(joined == 0).nonzero().view(-1)]
    # The entries of the rows of every S_h: their row (position in S_h),
    # column and value.
    entries = []
    for hop in range(num_hops + 1):
        ids = nodes[hop]
        count = degree.index_select(0, ids)
        run, at = expand_runs(crow.index_select(0, ids), count)
        entries.append((count, run, col.index_select(0, at),
                        value.index_select(0, at)))
        if hop < num_hops:
            neighbour = entries[-1][2]
            joined.index_put_((neighbour, ), joined.index_select(
                0, neighbour).clamp_(max=hop + 1))
            nodes.append((joined <= hop + 1).nonzero().view(-1))
    position = torch.empty(num_nodes, dtype=torch.long, device=device)
    blocks, blocks_t, targets = [], [], []
    for hop, ids in enumerate(nodes):
        position.index_copy_(0, ids, torch.arange(ids.numel(),
                                                  device=device))
        targets.append(position.index_select(0, nodes[0]))
        if hop > 0:
            # A[S_{h-1}, S_h]: every entry of the rows of S_{h-1}.
            count, _, entry_col, entry_value = entries[hop - 1]
            blocks.append(csr_from_counts(
                count, position.index_select(0, entry_col), entry_value,
                ids.numel()))
        else:
            index = position.index_select(0, rows)
    for hop in range(num_hops):
        # A[S_{h+1}, S_h], the transpose of blocks[h] by symmetry: the
        # entries of the rows of S_{h+1} whose column is in S_h.
        count, run, entry_col, entry_value = entries[hop + 1]
        keep = (joined.index_select(0, entry_col) <= hop).nonzero().view(-1)
        entry_col = entry_col.index_select(0, keep)
        position.index_copy_(0, nodes[hop], torch.arange(
            nodes[hop].numel(), device=device))
        blocks_t.append(csr_from_counts(
            torch.bincount(run.index_select(0, keep),
                           minlength=count.numel()),
            position.index_select(0, entry_col),
            entry_value.index_select(0, keep), nodes[hop].numel()))
    return ReceptiveField(nodes, blocks, blocks_t, targets, index)
