r"""FREEDOM's degree-sensitive edge pruning (used by FREEDOM and FMCNS)."""
from typing import Optional

import torch
from torch import Tensor

from .bipartite import bipartite_adjacency, unique_pairs, user_item_values


def sample_without_replacement(
    weight: Tensor,
    num_samples: int,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""Draws :obj:`num_samples` distinct indices with probability
    proportional to :obj:`weight`, like :func:`torch.multinomial` without
    replacement, by the Gumbel-top-:math:`k` trick: the indices of the
    :math:`k` largest keys :math:`\log w_e - \log E_e`, with
    :math:`E_e \sim \mathrm{Exp}(1)`, are distributed as :math:`k`
    successive draws without replacement.

    Args:
        weight (torch.Tensor): Non-negative weights :obj:`[E]`.
        num_samples (int): The number of indices to draw (at most
            :obj:`E`).
        generator (torch.Generator, optional): The random generator.
            (default: :obj:`None`)

    Returns:
        The drawn indices :obj:`[num_samples]`, in draw order.
    """
    if num_samples < 0 or num_samples > weight.numel():
        raise ValueError(f"Cannot draw {num_samples} of {weight.numel()} "
                         f"items without replacement")
    if bool((weight < 0).any()):
        raise ValueError("'weight' must be non-negative")
    noise = torch.empty(weight.shape, dtype=torch.float32,
                        device=weight.device)
    noise.exponential_(generator=generator)
    key = weight.to(torch.float32).log() - noise.log()
    return key.topk(num_samples, sorted=True)[1]


def degree_sensitive_pruning(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    keep_ratio: float,
    edge_weight: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
    eps: float = 0.0,
) -> Tensor:
    r"""Degree-sensitive edge pruning of FREEDOM (`"A Tale of Two Graphs"
    <https://arxiv.org/abs/2211.06924>`_), resampled every epoch.

    Keeps :math:`\lfloor |\mathcal{E}| \cdot \rho \rfloor` training edges
    drawn without replacement with probability proportional to

    .. math::
        w_{ui} = \frac{1}{\sqrt{d_u \, d_i}},

    which favours edges between low-degree nodes, then re-normalises the kept
    subgraph symmetrically,
    :math:`\tilde{\mathbf{A}}_{ui} = 1/\sqrt{d'_u \, d'_i}` with degrees
    :math:`d'` counted on the kept edges, mirrored to the
    :math:`(U + I) \times (U + I)` bipartite adjacency without self-loops.
    FREEDOM's :obj:`dropout = 0.8` is :obj:`keep_ratio = 0.2`.

    Args:
        edge_index (torch.Tensor): Training (user, item) pairs :obj:`[2, E]`
            (duplicates collapsed).
        num_users (int): The number of users :math:`U`.
        num_items (int): The number of items :math:`I`.
        keep_ratio (float): The fraction :math:`\rho \in [0, 1]` of edges
            kept.
        edge_weight (torch.Tensor, optional): Precomputed sampling weights
            :math:`w_{ui}` for the unique pairs in sorted (user, item) order,
            e.g. from :func:`pruning_weights`; computed when :obj:`None`.
            (default: :obj:`None`)
        generator (torch.Generator, optional): The random generator.
            (default: :obj:`None`)
        eps (float, optional): Added to the re-normalisation degrees
            (FREEDOM uses :obj:`1e-7`). (default: :obj:`0.0`)

    Returns:
        A coalesced CSR tensor :obj:`[U + I, U + I]`.
    """
    kept = degree_sensitive_edges(edge_index, num_users, num_items,
                                  keep_ratio, edge_weight, generator)
    return bipartite_adjacency(kept, num_users, num_items,
                               normalization='sym', eps=eps)


def degree_sensitive_edges(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    keep_ratio: float,
    edge_weight: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""The edges that :func:`degree_sensitive_pruning` keeps (same
    arguments, same random draws), as (user, item) pairs :obj:`[2, E']` in
    sorted (user, item) order, before re-normalisation."""
    if not 0.0 <= keep_ratio <= 1.0:
        raise ValueError(f"'keep_ratio' must lie in [0, 1] "
                         f"(got {keep_ratio})")
    edge_index = unique_pairs(edge_index, num_users, num_items)
    if edge_weight is None:
        edge_weight = pruning_weights(edge_index, num_users, num_items)
    elif edge_weight.numel() != edge_index.size(1):
        raise ValueError(f"'edge_weight' holds {edge_weight.numel()} values "
                         f"for {edge_index.size(1)} unique edges")
    num_keep = int(edge_index.size(1) * keep_ratio)
    kept = sample_without_replacement(edge_weight, num_keep, generator)
    return edge_index[:, kept.sort().values]


def pruning_weights(edge_index: Tensor, num_users: int,
                    num_items: int) -> Tensor:
    r"""Returns FREEDOM's sampling weights :math:`1/\sqrt{d_u d_i}` for the
    unique (user, item) pairs of :obj:`edge_index`, in sorted (user, item)
    order (the order :func:`degree_sensitive_pruning` uses)."""
    edge_index = unique_pairs(edge_index, num_users, num_items)
    return user_item_values(edge_index, num_users, num_items)[0]
