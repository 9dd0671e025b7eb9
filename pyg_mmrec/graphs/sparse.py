r"""Sparse-matrix helpers shared by the graph builders.

The library's adjacency format is a coalesced :obj:`torch.sparse_csr` tensor
(measured faster than :class:`torch_sparse.SparseTensor` for forward and
backward sparse-dense products on CPU). Every builder in
:mod:`pyg_mmrec.graphs` returns one; the propagation layers also accept a
:class:`torch_sparse.SparseTensor`.
"""
import warnings
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

Size = Union[int, Tuple[int, int], None]

NORMALIZATIONS = ('sym', 'row', 'none')


def _pair(size: Size, edge_index: Tensor) -> Tuple[int, int]:
    if size is None:
        n = int(edge_index.max()) + 1 if edge_index.numel() > 0 else 0
        return n, n
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def to_sparse_csr(
    edge_index: Tensor,
    edge_weight: Optional[Tensor] = None,
    size: Size = None,
) -> Tensor:
    r"""Builds a coalesced :obj:`torch.sparse_csr` matrix with
    :math:`\mathbf{A}_{ij} = w` for every edge :math:`(i, j, w)`, where
    :obj:`edge_index[0]` holds the rows :math:`i` and :obj:`edge_index[1]`
    the columns :math:`j`. Duplicate entries are summed.

    Args:
        edge_index (torch.Tensor): Entry indices, shape :obj:`[2, E]`.
        edge_weight (torch.Tensor, optional): Entry values, shape :obj:`[E]`.
            Ones when :obj:`None`. (default: :obj:`None`)
        size (int or (int, int), optional): The matrix shape; square with
            :obj:`max(edge_index) + 1` nodes when :obj:`None`.
            (default: :obj:`None`)
    """
    num_rows, num_cols = _pair(size, edge_index)
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1),
                                 device=edge_index.device)
    key = edge_index[0].to(torch.long) * num_cols
    key += edge_index[1]
    return _csr_from_keys(key, edge_weight, num_rows, num_cols)


def _csr_from_keys(key: Tensor, value: Tensor, num_rows: int,
                   num_cols: int, reduce: str = 'sum') -> Tensor:
    # The CSR matrix of entries (key // num_cols, key % num_cols, value),
    # sorted by (row, column) through the one int64 key, duplicates summed
    # (or their maximum kept, reduce='amax'):
    # the same matrix as a COO coalesce followed by a CSR conversion, with
    # a third of their temporaries and half their time (40M entries). Takes
    # ownership of `key`.
    device = key.device
    key, perm = key.sort()
    value = value[perm]
    del perm
    key, counts = torch.unique_consecutive(key, return_counts=True)
    if key.numel() < value.numel():  # duplicates: sum them (or the max)
        segment = torch.repeat_interleave(
            torch.arange(key.numel(), device=device), counts)
        if reduce == 'sum':
            value = value.new_zeros(key.numel()).index_add_(0, segment,
                                                            value)
        else:
            value = value.new_empty(key.numel()).scatter_reduce_(
                0, segment, value, reduce, include_self=False)
        del segment
    del counts
    row = torch.div(key, max(num_cols, 1), rounding_mode='floor')
    col = key - row * num_cols
    del key
    return csr_from_counts(torch.bincount(row, minlength=num_rows), col,
                           value, num_cols)


def csr_from_parts(crow: Tensor, col: Tensor, value: Tensor,
                   size: Tuple[int, int]) -> Tensor:
    r"""The CSR matrix :obj:`size` of row pointers :obj:`crow`, columns
    :obj:`col` and values :obj:`value`, laid out by the caller (sorted
    columns within each row), without an invariant check."""
    # "CSR support is in beta": it is our format
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', 'Sparse CSR tensor support')
        return torch.sparse_csr_tensor(crow, col, value, size,
                                       check_invariants=False)


def csr_from_counts(count: Tensor, col: Tensor, value: Tensor,
                    num_cols: int) -> Tensor:
    r""":func:`csr_from_parts` with row pointers from the entries per row
    :obj:`count` :obj:`[num_rows]` (the rows' entries consecutive in
    :obj:`col` and :obj:`value`)."""
    crow = torch.zeros(count.numel() + 1, dtype=torch.long,
                       device=count.device)
    torch.cumsum(count, 0, out=crow[1:])
    return csr_from_parts(crow, col, value, (count.numel(), num_cols))


def csr_to_edge_index(adj: Tensor) -> Tuple[Tensor, Tensor]:
    r"""Returns the :obj:`(edge_index, edge_weight)` of a sparse matrix
    (row indices in :obj:`edge_index[0]`, sorted by row for CSR input)."""
    if adj.layout == torch.sparse_csr:
        crow, col = adj.crow_indices(), adj.col_indices()
        counts = crow[1:] - crow[:-1]
        row = torch.arange(adj.size(0), device=col.device)
        row = row.repeat_interleave(counts)
        return torch.stack([row, col.to(torch.long)]), adj.values()
    adj = adj.coalesce()
    return adj.indices(), adj.values()


def row_sum(edge_index: Tensor, edge_weight: Optional[Tensor],
            num_nodes: int) -> Tensor:
    r"""Sums the weights of every row, :math:`d_i = \sum_j w_{ij}` (the
    number of entries when :obj:`edge_weight` is :obj:`None`)."""
    row = edge_index[0]
    if edge_weight is None:
        edge_weight = torch.ones(row.numel(), device=row.device)
    out = edge_weight.new_zeros(num_nodes)
    return out.index_add_(0, row, edge_weight)


def degree_power(deg: Tensor, exponent: float, eps: float = 0.0) -> Tensor:
    r"""Computes :math:`(d + \epsilon)^{p}` where :math:`d + \epsilon > 0`
    and zero elsewhere, so isolated nodes get zero rows instead of
    :obj:`NaN`/:obj:`inf`."""
    deg = deg + eps
    positive = deg > 0
    out = deg.where(positive, torch.ones_like(deg)).pow(exponent)
    return out.masked_fill_(~positive, 0.0)


def normalize_edge_weight(
    edge_index: Tensor,
    edge_weight: Optional[Tensor],
    num_nodes: int,
    normalization: str = 'sym',
) -> Tensor:
    r"""Normalises the weights of a square sparse matrix :math:`\mathbf{W}`
    by its row sums :math:`\mathbf{D} = \mathrm{diag}(\mathbf{W}\mathbf{1})`.

    * :obj:`"sym"`: :math:`\mathbf{D}^{-1/2} \mathbf{W} \mathbf{D}^{-1/2}`,
      i.e. :math:`w_{ij} / \sqrt{d_i d_j}` (also for a non-symmetric
      :math:`\mathbf{W}`, as the kNN graphs of the originals do).
    * :obj:`"row"`: :math:`\mathbf{D}^{-1} \mathbf{W}` (rows sum to one).
    * :obj:`"none"`: the weights unchanged.

    Zero-degree rows stay zero.

    Args:
        edge_index (torch.Tensor): Entry indices :obj:`[2, E]` (rows first).
        edge_weight (torch.Tensor, optional): Entry values :obj:`[E]`; ones
            when :obj:`None`.
        num_nodes (int): The number of rows (and columns).
        normalization (str, optional): :obj:`"sym"`, :obj:`"row"` or
            :obj:`"none"`. (default: :obj:`"sym"`)
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"'normalization' must be one of {NORMALIZATIONS} "
                         f"(got '{normalization}')")
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), device=edge_index.device)
    if normalization == 'none':
        return edge_weight
    deg = row_sum(edge_index, edge_weight, num_nodes)
    row, col = edge_index[0], edge_index[1]
    if normalization == 'row':
        return degree_power(deg, -1.0)[row] * edge_weight
    inv_sqrt = degree_power(deg, -0.5)
    return inv_sqrt[row] * edge_weight * inv_sqrt[col]


def _combine(mats: Sequence[Tensor], weights: Sequence[float],
             reduce: str) -> Tensor:
    # The entries of every matrix (scaled by its weight) in one CSR matrix,
    # the entries at one position reduced by `reduce`.
    if len(mats) == 0:
        raise ValueError("'mats' must hold at least one sparse matrix")
    if len(weights) != len(mats):
        raise ValueError(f"Got {len(mats)} matrices but {len(weights)} "
                         f"weights")
    shape = tuple(mats[0].shape)
    keys, values = [], []
    for mat, weight in zip(mats, weights):
        if tuple(mat.shape) != shape:
            raise ValueError(f"Shape mismatch: {tuple(mat.shape)} vs {shape}")
        edge_index, value = csr_to_edge_index(mat)
        key = edge_index[0] * shape[1]  # one int64 per entry, not three
        key += edge_index[1]
        del edge_index
        keys.append(key)
        values.append(value * weight)
    key, value = torch.cat(keys), torch.cat(values)
    del keys, values
    return _csr_from_keys(key, value, *shape, reduce=reduce)


def weighted_sum(
    mats: Sequence[Tensor],
    weights: Optional[Sequence[float]] = None,
) -> Tensor:
    r"""Returns :math:`\sum_m \alpha_m \mathbf{A}_m` of sparse matrices of one
    shape as a coalesced CSR matrix (overlapping entries add), e.g. FREEDOM's
    :math:`0.1\,\mathbf{A}_{img} + 0.9\,\mathbf{A}_{txt}`.

    Args:
        mats (list[torch.Tensor]): Sparse (CSR or COO) matrices.
        weights (list[float], optional): The :math:`\alpha_m`; ones when
            :obj:`None`. (default: :obj:`None`)
    """
    return _combine(mats, [1.0] * len(mats) if weights is None else weights,
                    'sum')


def elementwise_max(mats: Sequence[Tensor]) -> Tensor:
    r"""The element-wise maximum of sparse matrices of one shape on the union
    of their entries, an entry missing from a matrix counting as
    :math:`-\infty` (an entry of one matrix only keeps its value), as a
    coalesced CSR matrix: SMORE's fusion item graph
    :math:`\max(\mathbf{S}_v, \mathbf{S}_t)` (not re-normalised).

    Args:
        mats (list[torch.Tensor]): Sparse (CSR or COO) matrices.
    """
    return _combine(mats, [1.0] * len(mats), 'amax')


def expand_runs(start: Tensor, count: Tensor) -> Tuple[Tensor, Tensor]:
    r"""Expands runs :math:`[s_r, s_r + c_r)` of positions into one flat
    list: returns :obj:`(run, position)`, where :obj:`run[k]` is the run the
    :math:`k`-th position belongs to (e.g. the rows of a CSR matrix, with
    :obj:`start = crow[rows]` and :obj:`count = crow[rows + 1] - start`).

    Args:
        start (torch.Tensor): First position of every run :obj:`[R]`.
        count (torch.Tensor): Length of every run :obj:`[R]`.
    """
    total = int(count.sum())
    run = torch.repeat_interleave(
        torch.arange(count.numel(), device=count.device), count,
        output_size=total)
    offset = torch.cumsum(count, 0) - count
    position = torch.arange(total, device=count.device) + (
        start - offset).index_select(0, run)
    return run, position


def csr_rows_mm(adj: Tensor, rows: Tensor, x: Tensor) -> Tensor:
    r"""The rows :obj:`rows` of the product :math:`\mathbf{A}\mathbf{X}`
    of a CSR matrix and a dense one, :obj:`[R, F]`, touching only those
    rows' entries (differentiable in :obj:`x`; e.g. one graph hop for the
    items of a sampled subgraph).

    Args:
        adj (torch.Tensor): A :obj:`torch.sparse_csr` matrix :obj:`[M, N]`.
        rows (torch.Tensor): Row indices :obj:`[R]`.
        x (torch.Tensor): Dense :math:`\mathbf{X}` :obj:`[N, F]`.
    """
    crow = adj.crow_indices()
    start = crow[rows]
    run, position = expand_runs(start, crow[rows + 1] - start)
    src = adj.values()[position].unsqueeze(-1) * x[adj.col_indices()[position]]
    return x.new_zeros(rows.numel(), x.size(1)).index_add(0, run, src)


def csr_dense_rows(adj: Tensor, rows: Tensor) -> Tensor:
    r"""The rows :obj:`rows` of a CSR matrix as a dense :obj:`[R, N]`
    tensor, without densifying anything else (e.g. a batch of users'
    interaction rows).

    Args:
        adj (torch.Tensor): A :obj:`torch.sparse_csr` matrix :obj:`[M, N]`.
        rows (torch.Tensor): Row indices :obj:`[R]` (repeats allowed).
    """
    crow, col, value = adj.crow_indices(), adj.col_indices(), adj.values()
    rows = rows.to(crow.device, torch.long)
    start = crow[rows]
    run, at = expand_runs(start, crow[rows + 1] - start)
    out = value.new_zeros(rows.numel(), adj.size(1))
    out[run, col[at]] = value[at]
    return out


def csr_transpose(adj: Tensor) -> Tensor:
    r"""The transpose of a CSR matrix, as a coalesced CSR matrix (computed
    once and reused, e.g. for the backward pass of :math:`\mathbf{A}
    \mathbf{X}` with a non-symmetric :math:`\mathbf{A}`)."""
    edge_index, value = csr_to_edge_index(adj)
    return to_sparse_csr(edge_index.flip(0), value,
                         (adj.size(1), adj.size(0)))


def drop_entries(adj: Tensor, keep_rate: float,
                 generator: Optional[torch.Generator] = None) -> Tensor:
    r"""Keeps every stored entry of a CSR matrix independently with
    probability :math:`p` = :obj:`keep_rate` and rescales the kept ones by
    :math:`1 / p` (the edge dropper of DiffMM and MDMNS; it treats
    :math:`(i, j)` and :math:`(j, i)` independently, so a symmetric matrix
    in general becomes non-symmetric). :obj:`keep_rate=1` returns
    :obj:`adj` itself.

    Args:
        adj (torch.Tensor): A :obj:`torch.sparse_csr` matrix.
        keep_rate (float): The keep probability :math:`p \in (0, 1]`.
        generator (torch.Generator, optional): Random generator.
            (default: :obj:`None`)
    """
    if not 0.0 < keep_rate <= 1.0:
        raise ValueError(f"'keep_rate' must be in (0, 1] (got {keep_rate})")
    if keep_rate == 1.0:
        return adj
    edge_index, value = csr_to_edge_index(adj)
    keep = torch.rand(value.numel(), generator=generator,
                      device=value.device) < keep_rate
    return to_sparse_csr(edge_index[:, keep], value[keep] / keep_rate,
                         tuple(adj.shape))


def csr_row_block(adj: Tensor, rows: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The rows :obj:`rows` of a CSR matrix :obj:`adj` on the columns they
    use: :obj:`(block, block_t, columns)`, with :obj:`columns` the sorted
    distinct columns of their entries and the rows' own ids (so that one
    hop of the block over the columns' inputs gives the rows' outputs
    exactly, e.g. an item kNN hop for a sampled subgraph's items), the
    block :obj:`[R, C]` and its transpose."""
    crow, col = adj.crow_indices().long(), adj.col_indices().long()
    start = crow[rows]
    run, at = expand_runs(start, crow[rows + 1] - start)
    columns = torch.unique(torch.cat([rows, col[at]]))
    local = torch.searchsorted(columns, col[at])
    block = to_sparse_csr(torch.stack([run, local]), adj.values()[at],
                          (rows.numel(), columns.numel()))
    return block, csr_transpose(block), columns
