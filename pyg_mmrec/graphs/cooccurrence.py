r"""Co-occurrence graphs: users sharing items, items sharing users."""
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from .bipartite import unique_pairs
from .sparse import csr_from_parts

SIDES = ('item', 'user')


def _drop_diagonal(crow: Tensor, col: Tensor,
                   value: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    n = crow.numel() - 1
    counts = crow[1:] - crow[:-1]
    row = torch.arange(n, device=col.device).repeat_interleave(counts)
    keep = row != col
    counts = torch.zeros(n, dtype=torch.long, device=col.device)
    counts.index_add_(0, row[keep], torch.ones_like(row[keep]))
    crow = torch.cat([crow.new_zeros(1), counts.cumsum(0).to(crow.dtype)])
    return crow, col[keep], value[keep]


def _product_scipy(left_index: Tensor, num_left: int, num_right: int,
                   dtype: torch.dtype) -> Tuple[Tensor, Tensor, Tensor]:
    # M M^T for the binary M [num_left, num_right] given by unique pairs.
    import scipy.sparse as sp

    left, right = left_index[0].numpy(), left_index[1].numpy()
    ones = np.ones(left.shape[0], dtype=np.float32)
    mat = sp.csr_matrix((ones, (left, right)), shape=(num_left, num_right))
    prod = (mat @ mat.T).tocsr()
    prod.sort_indices()
    crow = torch.from_numpy(prod.indptr.astype(np.int64))
    col = torch.from_numpy(prod.indices.astype(np.int64))
    value = torch.from_numpy(prod.data).to(dtype)
    return crow, col, value


def _product_torch(left_index: Tensor, num_left: int, num_right: int,
                   dtype: torch.dtype) -> Tuple[Tensor, Tensor, Tensor]:
    ones = torch.ones(left_index.size(1), dtype=dtype,
                      device=left_index.device)
    mat = torch.sparse_coo_tensor(left_index, ones, (num_left, num_right),
                                  check_invariants=False)
    mat_t = torch.sparse_coo_tensor(left_index.flip(0), ones,
                                    (num_right, num_left),
                                    check_invariants=False)
    prod = torch.sparse.mm(mat.coalesce().to_sparse_csr(),
                           mat_t.coalesce().to_sparse_csr())
    # The product's columns need not be sorted within a row: sort them.
    crow = prod.crow_indices().to(torch.long)
    col = prod.col_indices().to(torch.long)
    row = torch.arange(num_left, device=col.device)
    row = row.repeat_interleave(crow[1:] - crow[:-1])
    perm = torch.argsort(row * num_left + col)
    return crow, col[perm], prod.values()[perm]


def cooccurrence_graph(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    side: str = 'item',
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    r"""Counts common neighbours in the user-item graph,

    .. math::
        \mathbf{C}_{\text{item}} = \mathbf{R}^{\top}\mathbf{R} -
        \mathrm{diag}(\cdot), \qquad
        \mathbf{C}_{\text{user}} = \mathbf{R}\mathbf{R}^{\top} -
        \mathrm{diag}(\cdot),

    with :math:`\mathbf{R} \in \{0, 1\}^{U \times I}` (duplicate pairs
    collapsed): :math:`C_{ij}` is the number of users two items share (or
    items two users share), and the diagonal is removed. Used by REARM's
    homography graphs. The product is sparse (SciPy on CPU,
    :func:`torch.sparse.mm` on other devices); memory is linear in the
    number of co-occurring pairs, never :math:`n \times n`.

    Args:
        edge_index (torch.Tensor): Training (user, item) pairs :obj:`[2, E]`.
        num_users (int): The number of users :math:`U`.
        num_items (int): The number of items :math:`I`.
        side (str, optional): :obj:`"item"` (:obj:`[I, I]`) or
            :obj:`"user"` (:obj:`[U, U]`). (default: :obj:`"item"`)
        dtype (torch.dtype, optional): The value type; the default floating
            type when :obj:`None` (exact for counts below :math:`2^{24}` in
            :obj:`float32`). (default: :obj:`None`)

    Returns:
        A CSR tensor :obj:`[n, n]` of counts, with sorted columns.
    """
    if side not in SIDES:
        raise ValueError(f"'side' must be one of {SIDES} (got '{side}')")
    dtype = dtype or torch.get_default_dtype()
    edge_index = unique_pairs(edge_index, num_users, num_items)
    if side == 'item':
        edge_index = edge_index.flip(0)
        n, m = num_items, num_users
    else:
        n, m = num_users, num_items
    if edge_index.device.type == 'cpu':
        crow, col, value = _product_scipy(edge_index, n, m, dtype)
    else:
        crow, col, value = _product_torch(edge_index, n, m, dtype)
    crow, col, value = _drop_diagonal(crow, col, value)
    return csr_from_parts(crow, col, value, (n, n))


def topk_entries_per_row(adj: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    r"""Keeps the :math:`k` largest entries of every row of a sparse matrix
    (all of them in rows with fewer). Ties are broken towards the lower
    column index.

    Args:
        adj (torch.Tensor): A sparse CSR (or COO) matrix.
        k (int): Entries kept per row.

    Returns:
        (edge_index, value): the kept entries, ordered by row, then by
        decreasing value (e.g. REARM's co-occurrence lists).
    """
    edge_index, value, _ = _topk_order(adj, k)
    return edge_index, value


def _topk_order(adj: Tensor, k: int) -> Tuple[Tensor, Tensor, Tensor]:
    if k < 1:
        raise ValueError(f"'k' must be positive (got {k})")
    if adj.layout != torch.sparse_csr:
        adj = adj.coalesce().to_sparse_csr()
    crow = adj.crow_indices().to(torch.long)
    col = adj.col_indices().to(torch.long)
    value = adj.values()
    counts = crow[1:] - crow[:-1]
    row = torch.arange(adj.size(0), device=col.device)
    row = row.repeat_interleave(counts)
    # Lexicographic (row ascending, value descending, column ascending) via
    # two stable sorts; CSR entries come column-sorted within a row.
    perm = value.sort(descending=True, stable=True)[1]
    perm = perm[row[perm].sort(stable=True)[1]]
    rank = torch.arange(perm.numel(), device=col.device) - crow[row[perm]]
    perm = perm[rank < k]
    return torch.stack([row[perm], col[perm]]), value[perm], perm


def topk_per_row(adj: Tensor, k: int) -> Tensor:
    r"""Keeps the :math:`k` largest entries of every row of a sparse matrix
    and returns a CSR matrix of the same shape (see
    :func:`topk_entries_per_row`)."""
    if adj.layout != torch.sparse_csr:
        adj = adj.coalesce().to_sparse_csr()
    _, _, perm = _topk_order(adj, k)
    keep = torch.zeros(adj.values().numel(), dtype=torch.bool,
                       device=perm.device)
    keep[perm] = True
    crow = adj.crow_indices().to(torch.long)
    col = adj.col_indices().to(torch.long)
    row = torch.arange(adj.size(0), device=col.device)
    row = row.repeat_interleave(crow[1:] - crow[:-1])
    counts = torch.zeros(adj.size(0), dtype=torch.long, device=col.device)
    counts.index_add_(0, row[keep], torch.ones_like(row[keep]))
    new_crow = torch.cat([crow.new_zeros(1), counts.cumsum(0)])
    return csr_from_parts(new_crow, col[keep], adj.values()[keep],
                           tuple(adj.shape))


def cap_per_node(edge_index: Tensor, num_nodes: int, cap: int,
                 generator: Optional[torch.Generator] = None) -> Tensor:
    r"""Keeps at most :obj:`cap` of the pairs of every node of
    :obj:`edge_index[1]`: all pairs of a node with at most :obj:`cap`, a
    uniform sample without replacement of the others' (one seeded random
    key per pair of those nodes only, from :obj:`generator`: nothing is
    drawn when no node exceeds the cap). Returns the kept columns of
    :obj:`edge_index` :obj:`[2, E']`, in their order.

    Args:
        edge_index (torch.Tensor): Pairs :obj:`[2, E]`, e.g. (user, item)
            to cap the users considered per item.
        num_nodes (int): The number of nodes of :obj:`edge_index[1]`.
        cap (int): Pairs kept per node.
        generator (torch.Generator, optional): The draws' generator.
            (default: :obj:`None`)
    """
    if cap < 1:
        raise ValueError(f"'cap' must be positive (got {cap})")
    node = edge_index[1]
    degree = torch.bincount(node, minlength=num_nodes)
    over = degree[node] > cap
    if not bool(over.any()):
        return edge_index
    at = over.nonzero().view(-1)
    key = torch.rand(at.numel(), generator=generator, dtype=torch.float64)
    # Rank of every pair of an over-cap node among its node's pairs:
    order = torch.argsort(node[at].to(torch.float64) + key)
    grouped = node[at][order]
    rank = (torch.arange(order.numel()) -
            torch.searchsorted(grouped, grouped))
    keep = torch.ones(node.numel(), dtype=torch.bool)
    keep[at[order[rank >= cap]]] = False
    return edge_index[:, keep]


def capped_cooccurrence_topk(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    k: int,
    cap: int,
    side: str = 'user',
    generator: Optional[torch.Generator] = None,
    block_pairs: int = 1 << 24,
) -> Tuple[Tensor, Tensor]:
    r"""The :func:`topk_entries_per_row` of the co-occurrence counts of
    :func:`cooccurrence_graph` with at most :obj:`cap` co-occurring nodes
    considered per shared node, without holding every co-occurring pair:

    .. math::
        \tilde{C}_{uv} = \sum_i R_{ui} \, S_{vi}, \quad u \ne v,

    for :obj:`side="user"`, with :math:`\mathbf{S} \subseteq \mathbf{R}`
    the pairs :func:`cap_per_node` keeps of every item (the users of an
    item with at most :obj:`cap` users, else a seeded sample of
    :obj:`cap`; :obj:`side="item"` caps the items per user). Every node
    counts all its own shared nodes; the candidates it meets through a
    popular one are sampled. With no node over the cap,
    :math:`\tilde{\mathbf{C}} = \mathbf{C}` and no random number is drawn.

    The products run by blocks of rows (SciPy, on CPU) of at most about
    :obj:`block_pairs` pairs before merging, each reduced to its top
    :math:`k` at once: memory :math:`O(\text{block\_pairs} + n k)`, work
    :math:`O(\sum_u \sum_{i \in \mathcal{N}(u)} \min(d_i, \text{cap}))
    \le O(E \cdot \text{cap})`, against :math:`O(\sum_i d_i^2)` pairs for
    the exact counts of a power-law graph.

    Returns:
        (edge_index, value): as :func:`topk_entries_per_row` (rows, then
        decreasing counts, ties towards the lower column), on the device
        of :obj:`edge_index`.
    """
    import scipy.sparse as sp

    if side not in SIDES:
        raise ValueError(f"'side' must be one of {SIDES} (got '{side}')")
    device = edge_index.device
    pairs = unique_pairs(edge_index.cpu(), num_users, num_items)
    n, m = num_users, num_items
    if side == 'item':
        pairs, n, m = pairs.flip(0), num_items, num_users
    sampled = cap_per_node(pairs, m, cap, generator)

    def csr(index, shape):
        ones = np.ones(index.size(1), dtype=np.float64)
        return sp.csr_matrix((ones, (index[0].numpy(), index[1].numpy())),
                             shape=shape)

    left = csr(pairs, (n, m))
    right_t = csr(sampled.flip(0), (m, n))
    # Pairs before merging per row: sum of the sampled degrees of its nodes
    per_row = torch.from_numpy(left @ np.diff(right_t.indptr)).long()
    total = int(per_row.sum())
    ends = torch.searchsorted(per_row.cumsum(0), torch.arange(
        block_pairs, max(total, block_pairs), block_pairs), right=True)
    bounds = torch.unique(torch.cat([torch.tensor([0]), ends,
                                     torch.tensor([n])]).clamp(max=n))
    rows, cols, values = [], [], []
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        prod = (left[a:b] @ right_t).tocsr()
        prod.sort_indices()
        crow = torch.from_numpy(prod.indptr.astype(np.int64))
        col = torch.from_numpy(prod.indices.astype(np.int64))
        value = torch.from_numpy(prod.data)
        row = torch.arange(b - a).repeat_interleave(crow[1:] - crow[:-1])
        keep = col != row + a
        counts = torch.bincount(row[keep], minlength=b - a)
        block = csr_from_parts(
            torch.cat([crow.new_zeros(1), counts.cumsum(0)]), col[keep],
            value[keep], (b - a, n))
        (row, col), value = topk_entries_per_row(block, k)
        rows.append(row + a)
        cols.append(col)
        values.append(value)
    index = torch.stack([torch.cat(rows), torch.cat(cols)])
    return index.to(device), torch.cat(values).to(device)
