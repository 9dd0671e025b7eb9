r"""An inverted-file (IVF) index for approximate cosine :math:`k`-NN graphs
over many rows, the back-end of :func:`~pyg_mmrec.graphs.knn_graph`'s
:obj:`method="ivf"`.

The exact search compares every pair of rows: :math:`n^2 d` products and a
top-:math:`k` over :math:`n^2` similarities, about two CPU hours per 128-d
modality for 500,000 items. The inverted file (Jégou et al., "Product
Quantization for Nearest Neighbor Search", TPAMI 2011; the
:obj:`IndexIVFFlat` of FAISS) compares each row with a few cells only:

1. spherical :math:`k`-means (seeded, on a sample of at most
   :math:`64 \cdot C` rows) puts :math:`C` unit centroids on the sphere;
2. each row lives in the cell of its most similar centroid;
3. each query searches the :obj:`num_probes` cells of its most similar
   centroids, exactly, and keeps the best :math:`k` found.

The cost is :math:`O(n \cdot C d + n \cdot \text{num\_probes} \cdot
(n / C) \cdot d)`; with :math:`C \approx 4\sqrt{n}` it grows as
:math:`n^{3/2}`. A neighbour in an unprobed cell is missed: the recall
against the exact search is measured by ``experiments/bench_homography.py``
(``--knn-method ivf``). Probing every cell is the exact search. No
dependency beyond :mod:`torch`; deterministic for a given :obj:`seed`.
"""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

#: Elements of one [queries, members] similarity block.
_BLOCK_ELEMENTS = 1 << 22
#: Training rows per centroid for the k-means.
_SAMPLE_PER_LIST = 64


def default_num_lists(n: int) -> int:
    r"""Cells of the inverted file for :obj:`n` rows: :math:`\lceil 4
    \sqrt{n} \rceil` (FAISS's rule of thumb), at most :obj:`n`."""
    return max(1, min(n, math.ceil(4 * math.sqrt(n))))


def _top_centroids(unit: Tensor, centroids: Tensor, num: int) -> Tensor:
    # Indices [n, num] of each row's most similar centroids, by blocks.
    step = max(1, _BLOCK_ELEMENTS // centroids.size(0))
    out = torch.empty(unit.size(0), num, dtype=torch.long, device=unit.device)
    for start in range(0, unit.size(0), step):
        sim = unit[start:start + step] @ centroids.t()
        out[start:start + step] = sim.topk(num, dim=1).indices
    return out


def spherical_kmeans(unit: Tensor, num_lists: int, num_iters: int = 10,
                     seed: int = 0) -> Tensor:
    r"""Unit centroids :obj:`[num_lists, d]` of the unit rows :obj:`unit`
    by spherical :math:`k`-means (Lloyd steps on the cosine; a cell left
    empty keeps its centroid), trained on a seeded sample of at most
    :math:`64 \cdot` :obj:`num_lists` rows."""
    gen = torch.Generator().manual_seed(seed)
    n = unit.size(0)
    sample = torch.randperm(n, generator=gen)[:_SAMPLE_PER_LIST * num_lists]
    sample = unit[sample.to(unit.device)]
    first = torch.randperm(sample.size(0), generator=gen)[:num_lists]
    centroids = sample[first.to(unit.device)].clone()
    for _ in range(num_iters):
        assign = _top_centroids(sample, centroids, 1).view(-1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, sample)
        norm = sums.norm(dim=1, keepdim=True)
        centroids = torch.where(norm > 0, sums / norm.clamp_min(1e-30),
                                centroids)
    return centroids


def _merge(best_val: Tensor, best_col: Tensor, rows: Tensor, val: Tensor,
           col: Tensor) -> None:
    # Keep, for each query in `rows`, the best of its current neighbours
    # and the new candidates (in place).
    k = best_val.size(1)
    all_val = torch.cat([best_val[rows], val], dim=1)
    all_col = torch.cat([best_col[rows], col], dim=1)
    top_val, pos = all_val.topk(k, dim=1)
    best_val[rows] = top_val
    best_col[rows] = all_col.gather(1, pos)


def ivf_knn(unit: Tensor, k: int, loop: bool, num_probes: int = 16,
            num_lists: Optional[int] = None,
            seed: int = 0) -> Tuple[Tensor, Tensor]:
    r"""The approximate cosine :math:`k`-NN of the unit rows :obj:`unit`
    :obj:`[n, d]` by an inverted file (see the module docstring).

    Args:
        unit (torch.Tensor): L2-normalised rows (all-zero rows allowed).
        k (int): Neighbours per row, the row itself first when
            :obj:`loop=True`.
        loop (bool): Whether each row is its own first neighbour.
        num_probes (int, optional): Cells searched per query.
            (default: :obj:`16`)
        num_lists (int, optional): Cells :math:`C`. (default:
            :func:`default_num_lists`)
        seed (int, optional): Seed of the :math:`k`-means. (default: :obj:`0`)

    Returns:
        (similarity, column): :obj:`[n, k]` each, by decreasing similarity.
        A query whose probed cells hold fewer than :math:`k` other rows
        (tiny or very uneven cells) is searched exactly.
    """
    n, device = unit.size(0), unit.device
    num_lists = default_num_lists(n) if num_lists is None else num_lists
    if num_lists < 1 or num_probes < 1:
        raise ValueError(f"'num_lists' and 'num_probes' must be positive "
                         f"(got {num_lists} and {num_probes})")
    num_lists = min(num_lists, n)
    num_probes = min(num_probes, num_lists)
    others = k - 1 if loop else k
    centroids = spherical_kmeans(unit, num_lists, seed=seed)
    probe = _top_centroids(unit, centroids, num_probes)  # [n, P]
    del centroids
    # Members of each cell (a row's first probe is its own cell), and the
    # queries probing each cell, both grouped by cell:
    members = torch.argsort(probe[:, 0], stable=True)
    member_ptr = torch.zeros(num_lists + 1, dtype=torch.long, device=device)
    member_ptr[1:] = torch.bincount(probe[:, 0], minlength=num_lists).cumsum(0)
    queries = torch.argsort(probe.view(-1), stable=True) // num_probes
    query_ptr = torch.zeros(num_lists + 1, dtype=torch.long, device=device)
    query_ptr[1:] = torch.bincount(probe.view(-1),
                                   minlength=num_lists).cumsum(0)
    del probe
    member_ptr, query_ptr = member_ptr.tolist(), query_ptr.tolist()

    best_val = unit.new_full((n, max(others, 1)), float('-inf'))
    best_col = torch.full((n, max(others, 1)), -1, dtype=torch.long,
                          device=device)
    for cell in range(num_lists if others > 0 else 0):
        cell_members = members[member_ptr[cell]:member_ptr[cell + 1]]
        if cell_members.numel() == 0:
            continue
        cell_x = unit[cell_members]
        cell_queries = queries[query_ptr[cell]:query_ptr[cell + 1]]
        step = max(1, _BLOCK_ELEMENTS // cell_members.numel())
        for start in range(0, cell_queries.numel(), step):
            rows = cell_queries[start:start + step]
            sim = unit[rows] @ cell_x.t()
            sim.masked_fill_(rows[:, None] == cell_members[None, :],
                             float('-inf'))  # the query itself
            val, pos = sim.topk(min(others, cell_members.numel()), dim=1)
            _merge(best_val, best_col, rows, val, cell_members[pos])
    best_val, best_col = best_val[:, :others], best_col[:, :others]
    best_col[best_val == float('-inf')] = -1  # a query alone in its cells
    # Queries whose cells held too few rows: an exact search.
    short = (best_col < 0).any(dim=1).nonzero().view(-1)
    for start in range(0, short.numel(), max(1, _BLOCK_ELEMENTS // n)):
        rows = short[start:start + max(1, _BLOCK_ELEMENTS // n)]
        sim = unit[rows] @ unit.t()
        sim[torch.arange(rows.numel(), device=device), rows] = float('-inf')
        best_val[rows], best_col[rows] = sim.topk(others, dim=1)
    # Decreasing similarity, ties towards the lower index:
    order = torch.argsort(best_col, dim=1)
    best_val, best_col = best_val.gather(1, order), best_col.gather(1, order)
    order = best_val.sort(dim=1, descending=True, stable=True).indices
    best_val, best_col = best_val.gather(1, order), best_col.gather(1, order)
    if loop:
        self_col = torch.arange(n, device=device).view(-1, 1)
        self_val = (unit * unit).sum(dim=1, keepdim=True)
        best_val = torch.cat([self_val, best_val], dim=1)
        best_col = torch.cat([self_col, best_col], dim=1)
    return best_val, best_col
