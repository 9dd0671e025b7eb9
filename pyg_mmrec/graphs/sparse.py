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
    edge_index = edge_index.to(torch.long)
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), device=edge_index.device)
    coo = torch.sparse_coo_tensor(edge_index, edge_weight,
                                  (num_rows, num_cols),
                                  check_invariants=False).coalesce()
    with warnings.catch_warnings():  # "CSR support is in beta": it is our format
        warnings.filterwarnings('ignore', 'Sparse CSR tensor support')
        return coo.to_sparse_csr()


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
    if len(mats) == 0:
        raise ValueError("'mats' must hold at least one sparse matrix")
    if weights is None:
        weights = [1.0] * len(mats)
    if len(weights) != len(mats):
        raise ValueError(f"Got {len(mats)} matrices but {len(weights)} "
                         f"weights")
    shape = tuple(mats[0].shape)
    indices, values = [], []
    for mat, weight in zip(mats, weights):
        if tuple(mat.shape) != shape:
            raise ValueError(f"Shape mismatch: {tuple(mat.shape)} vs {shape}")
        edge_index, value = csr_to_edge_index(mat)
        indices.append(edge_index)
        values.append(value * weight)
    return to_sparse_csr(torch.cat(indices, dim=1), torch.cat(values), shape)
