r"""The contrastive losses of the DiffMM family between views of the users
and items, composed of the exact, chunked InfoNCE of
:mod:`pyg_mmrec.nn.contrastive`: DiffMM's contrast of modality views and
MDMNS's multi-level loss."""
import functools
import itertools
import operator
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .contrastive import info_nce, noisy_view_info_nce


def _sum_in_order(terms: List[Tensor]) -> Tensor:
    # ((t_0 + t_1) + t_2) + ...: a tensor, never the 0 sum() starts from.
    return functools.reduce(operator.add, terms)


def view_pair_info_nce(views: Sequence[Tuple[Tensor, Tensor]],
                       users: Optional[Tensor], items: Optional[Tensor],
                       temperature: float = 0.5, chunk_size: int = 4096,
                       matmul_dtype: Optional[torch.dtype] = None
                       ) -> Optional[Tensor]:
    r"""DiffMM's contrast of modality views: for every pair :math:`(a, b)`
    of the :obj:`(user, item)` views (in :func:`itertools.combinations`
    order), :func:`info_nce` between their user halves anchored on
    :obj:`users` and between their item halves anchored on :obj:`items`,

    .. math::
        \mathcal{L} = \sum_{a < b} \mathrm{InfoNCE}(\mathbf{U}_a,
        \mathbf{U}_b) + \mathrm{InfoNCE}(\mathbf{I}_a, \mathbf{I}_b),

    summed in that order; :obj:`None` for fewer than two views.

    Args:
        views (Sequence[Tuple[Tensor, Tensor]]): The :obj:`(user, item)`
            embeddings :obj:`([U, d], [I, d])` of every view.
        users (torch.Tensor, optional): The user anchors (see
            :func:`info_nce`'s :obj:`index`).
        items (torch.Tensor, optional): The item anchors.
        temperature (float, optional): :math:`\tau`. (default: :obj:`0.5`)
        chunk_size (int, optional): Anchor rows per chunk of logits.
            (default: :obj:`4096`)
        matmul_dtype (torch.dtype, optional): See :func:`info_nce`.
            (default: :obj:`None`)
    """
    parts = []
    for (user_a, item_a), (user_b, item_b) in itertools.combinations(
            views, 2):
        parts.append(info_nce(user_a, user_b, temperature, users, chunk_size,
                              matmul_dtype))
        parts.append(info_nce(item_a, item_b, temperature, items, chunk_size,
                              matmul_dtype))
    return _sum_in_order(parts) if parts else None


def multi_level_info_nce(fused: Tuple[Tensor, Tensor],
                         branches: Sequence[Tuple[Tensor, Tensor]],
                         noise_levels: Sequence[float],
                         users: Optional[Tensor] = None,
                         items: Optional[Tensor] = None,
                         temperature: float = 0.5, chunk_size: int = 4096,
                         matmul_dtype: Optional[torch.dtype] = None
                         ) -> Tensor:
    r"""MDMNS's multi-level contrastive loss: for every modality branch
    :math:`m` (in order), :func:`info_nce` between the fused and the
    branch's user embeddings (anchors :obj:`users`), between their item
    embeddings (anchors :obj:`items`), and :func:`noisy_view_info_nce` of
    the branch's item embeddings at :obj:`noise_levels` (the "multi-level
    negatives", anchors :obj:`items`),

    .. math::
        \mathcal{L} = \sum_m \mathrm{InfoNCE}(\mathbf{U}_f, \mathbf{U}_m) +
        \mathrm{InfoNCE}(\mathbf{I}_f, \mathbf{I}_m) +
        \mathcal{L}_{noisy}(\mathbf{I}_m),

    summed in that order.

    Args:
        fused (Tuple[Tensor, Tensor]): The fused branch's :obj:`(user,
            item)` embeddings :obj:`([U, d], [I, d])`.
        branches (Sequence[Tuple[Tensor, Tensor]]): Every modality
            branch's, likewise (at least one).
        noise_levels (Sequence[float]): See :func:`noisy_view_info_nce`.
        users (torch.Tensor, optional): The user anchors (see
            :func:`info_nce`'s :obj:`index`; all users if :obj:`None`).
        items (torch.Tensor, optional): The item anchors.
        temperature (float, optional): :math:`\tau`. (default: :obj:`0.5`)
        chunk_size (int, optional): Anchor rows per chunk of logits.
            (default: :obj:`4096`)
        matmul_dtype (torch.dtype, optional): See :func:`info_nce`.
            (default: :obj:`None`)
    """
    fused_user, fused_item = fused
    parts = []
    for user, item in branches:
        parts.append(info_nce(fused_user, user, temperature, users,
                              chunk_size, matmul_dtype))
        parts.append(info_nce(fused_item, item, temperature, items,
                              chunk_size, matmul_dtype))
        parts.append(noisy_view_info_nce(
            item, noise_levels, temperature, index=items,
            chunk_size=chunk_size, matmul_dtype=matmul_dtype))
    return _sum_in_order(parts)
