r"""LATTICE's latent item graph without :math:`I \times I` tensors: the
neighbour pairs are selected without gradient (a chunked top-:math:`k`,
:func:`~pyg_mmrec.graphs.knn_graph`) and the similarity values are
recomputed with gradient on those pairs only, so that values and gradients
equal the dense construction's (top-:math:`k` of the dense similarity
matrix, whose index selection has no gradient either) at
:math:`O(I k d)` memory."""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..graphs import csr_transpose, knn_graph, to_sparse_csr


@torch.no_grad()
def topk_pairs(x: Tensor, k: int, method: str = 'auto') -> Tensor:
    r"""The :obj:`[2, n k]` (row, neighbour) pairs of the cosine
    :math:`k`-NN of the rows of :obj:`x`, each row among its own neighbours
    (the top-:math:`k` of a similarity matrix with unit diagonal)."""
    return knn_graph(x.detach(), k, loop=True, method=method)[0]


def cosine_pair_values(x: Tensor, edge_index: Tensor) -> Tensor:
    r"""The cosine similarities :math:`\cos(\mathbf{x}_r, \mathbf{x}_c)` of
    the pairs :obj:`edge_index` :obj:`[2, E]`, with gradient (an all-zero
    row has similarity 0)."""
    unit = F.normalize(x, dim=-1)
    return (unit[edge_index[0]] * unit[edge_index[1]]).sum(-1)


@torch.no_grad()
def pair_union(edge_indices: Sequence[Tensor], num_nodes: int
               ) -> Tuple[Tensor, List[Tensor]]:
    r"""The sorted union :obj:`[2, E]` of several pair lists and, for each
    list, the position of each of its pairs in the union (so that values
    are summed onto the union with :meth:`Tensor.index_add`, with
    gradient)."""
    keys = [e[0] * num_nodes + e[1] for e in edge_indices]
    union, inverse = torch.unique(torch.cat(keys), return_inverse=True)
    edge_index = torch.stack([union // num_nodes, union % num_nodes])
    return edge_index, list(inverse.split([k.numel() for k in keys]))


def sym_normalize_values(edge_index: Tensor, value: Tensor, num_nodes: int,
                         eps: float = 1e-12) -> Tensor:
    r""":math:`d_r^{-1/2} v_{rc} d_c^{-1/2}` with the weighted row degrees
    :math:`d_r = \sum_c v_{rc}` clamped at :obj:`eps` (a row whose sum is
    not positive would give :obj:`inf` or :obj:`NaN`), with gradient."""
    deg = value.new_zeros(num_nodes).index_add(0, edge_index[0], value)
    inv_sqrt = deg.clamp_min(eps).pow(-0.5)
    return inv_sqrt[edge_index[0]] * value * inv_sqrt[edge_index[1]]


class _ValuedSpMM(torch.autograd.Function):
    # S X for S given by (sorted distinct pairs, values), with the gradient
    # of the values as sampled dot products <dY_r, X_c> on the pairs only:
    # torch.sparse.mm's backward for a sparse input builds the dense
    # [n, n] gradient first (40 GB at 100k items).
    @staticmethod
    def forward(ctx, value: Tensor, x: Tensor, edge_index: Tensor,
                num_nodes: int) -> Tensor:
        adj = to_sparse_csr(edge_index, value.detach(), (num_nodes,
                                                         x.size(0)))
        ctx.save_for_backward(x)
        ctx.adj = adj
        return adj @ x.detach()

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, = ctx.saved_tensors
        adj = ctx.adj
        grad_value = grad_x = None
        if ctx.needs_input_grad[0]:
            grad_value = torch.sparse.sampled_addmm(
                adj, grad.contiguous(), x.detach().t().contiguous(),
                beta=0.0).values()
        if ctx.needs_input_grad[1]:
            grad_x = csr_transpose(adj) @ grad
        return grad_value, grad_x, None, None


def weighted_propagate(edge_index: Tensor, value: Tensor, x: Tensor,
                       num_nodes: int) -> Tensor:
    r""":math:`\mathbf{S}\mathbf{X}` for the sparse :math:`\mathbf{S}` of
    entries :obj:`value` at the sorted, distinct pairs :obj:`edge_index`,
    differentiable in both :obj:`value` (sampled dot products on the pairs,
    never an :math:`n \times n` tensor) and :obj:`x`."""
    return _ValuedSpMM.apply(value, x, edge_index, num_nodes)
