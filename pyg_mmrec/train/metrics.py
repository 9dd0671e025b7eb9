r"""Vectorised top-:math:`K` ranking metrics (MMRec/RecBole ``full_sort``
conventions).

For a user with :math:`P` relevant items and ranked list
:math:`(i_1, i_2, \ldots)`, let :math:`h_r = 1[i_r \text{ is relevant}]`:

* Recall@K :math:`= \sum_{r \le K} h_r / P`
* NDCG@K :math:`= \sum_{r \le K} h_r / \log_2(r + 1)`, divided by
  :math:`\mathrm{IDCG} = \sum_{r \le \min(P, K)} 1 / \log_2(r + 1)`
* Precision@K :math:`= \sum_{r \le K} h_r / K`
* MAP@K :math:`= \sum_{r \le K} h_r \cdot \mathrm{Precision@}r / \min(P, K)`
* Hit@K :math:`= 1[\sum_{r \le K} h_r > 0]`

If the ranked list is shorter than :math:`K` (fewer items than :math:`K`),
:math:`K` is clamped to the list length :math:`L`. This only changes
Precision@K, which then divides by :math:`L`
(:class:`torch_geometric.metrics.LinkPredPrecision` divides by :math:`K`); the
other metrics agree with
:obj:`torch_geometric.metrics.LinkPred*` for every :math:`K`. Users without
relevant items (:math:`P = 0`) get :obj:`0` for every metric and must be left
out of the average.
"""
from typing import Dict, Sequence

import torch
from torch import Tensor

#: The supported metric names, in output order.
METRICS = ('recall', 'ndcg', 'precision', 'map', 'hit')


def key_hits(topk_items: Tensor, keys: Tensor, num_items: int,
             offset: int = 0) -> Tensor:
    r"""Marks which ranked items are relevant, by binary search on a sorted
    key set.

    Args:
        topk_items (torch.Tensor): Ranked item ids :obj:`[B, L]`; negative ids
            mark empty slots and never hit.
        keys (torch.Tensor): Sorted relevant keys
            :obj:`row * num_items + item`, where :obj:`row` is the row index
            in :obj:`topk_items` plus :obj:`offset`.
        num_items (int): Number of items.
        offset (int, optional): Row index of :obj:`topk_items[0]` in
            :obj:`keys`. (default: :obj:`0`)

    Returns:
        A boolean :obj:`[B, L]` hit matrix.
    """
    B = topk_items.size(0)
    if keys.numel() == 0 or topk_items.numel() == 0:
        return torch.zeros_like(topk_items, dtype=torch.bool)
    row = torch.arange(offset, offset + B, device=topk_items.device)
    query = row.view(-1, 1) * num_items + topk_items
    pos = torch.searchsorted(keys, query).clamp_(max=keys.numel() - 1)
    return (keys[pos] == query) & (topk_items >= 0)


def csr_hits(topk_items: Tensor, rowptr: Tensor, col: Tensor,
             num_items: int) -> Tensor:
    r"""Marks which ranked items are relevant, given the relevant items of
    every row in CSR format.

    Args:
        topk_items (torch.Tensor): Ranked item ids :obj:`[B, L]`; negative ids
            mark empty slots and never hit.
        rowptr (torch.Tensor): CSR row pointer :obj:`[B + 1]`.
        col (torch.Tensor): Relevant item ids,
            :obj:`col[rowptr[b]:rowptr[b + 1]]` for row :obj:`b` (any order
            within a row).
        num_items (int): Number of items.

    Returns:
        A boolean :obj:`[B, L]` hit matrix.
    """
    B = topk_items.size(0)
    row = torch.repeat_interleave(
        torch.arange(B, device=col.device), rowptr.diff(),
        output_size=col.numel())
    keys = (row * num_items + col).sort()[0]
    return key_hits(topk_items, keys.to(topk_items.device), num_items)


def ranking_metrics(
    hits: Tensor,
    num_relevant: Tensor,
    ks: Sequence[int] = (5, 10, 20, 50),
    metrics: Sequence[str] = METRICS,
    reduce: str = 'sum',
    dtype: torch.dtype = torch.float64,
) -> Dict[str, Tensor]:
    r"""Computes ranking metrics from a hit matrix, for all :obj:`ks` at once.

    Args:
        hits (torch.Tensor): Boolean hit matrix :obj:`[B, L]`, columns in rank
            order.
        num_relevant (torch.Tensor): Number of relevant items :math:`P` of each
            row, :obj:`[B]`.
        ks (Sequence[int]): Cut-offs; each is clamped to :obj:`L`.
            (default: :obj:`(5, 10, 20, 50)`)
        metrics (Sequence[str]): Subset of :obj:`METRICS`.
            (default: all)
        reduce (str): :obj:`"sum"` returns scalar sums over the rows (rows
            with :math:`P = 0` contribute :obj:`0`), to be accumulated over
            batches and divided by the number of rows with :math:`P > 0`;
            :obj:`"none"` returns the per-row values :obj:`[B]`.
            (default: :obj:`"sum"`)
        dtype (torch.dtype): Floating point type of the results.
            (default: :obj:`torch.float64`)

    Returns:
        A dictionary mapping :obj:`"<metric>@<k>"` to a tensor.
    """
    check_metrics(ks, metrics)
    if reduce not in ('sum', 'none'):
        raise ValueError(f"reduce must be 'sum' or 'none', got {reduce!r}")
    if hits.dim() != 2 or hits.size(1) == 0:
        raise ValueError(f"hits must be a non-empty [B, L] matrix, got shape "
                         f"{tuple(hits.shape)}")
    device = hits.device
    B, L = hits.shape
    hits = hits.to(dtype)
    k_eff = [min(int(k), L) for k in ks]
    idx = torch.tensor([k - 1 for k in k_eff], device=device)
    k_t = torch.tensor(k_eff, dtype=dtype, device=device).view(1, -1)
    num_relevant = num_relevant.to(device).view(-1, 1)
    has = (num_relevant > 0).to(dtype)  # [B, 1]
    P = num_relevant.to(dtype).clamp(min=1)
    rank = torch.arange(1, L + 1, dtype=dtype, device=device)

    cum_hits = hits.cumsum(dim=1)
    num_hits = cum_hits[:, idx]  # [B, |ks|]
    values: Dict[str, Tensor] = {}
    for name in metrics:
        if name == 'recall':
            value = num_hits / P
        elif name == 'precision':
            value = num_hits / k_t
        elif name == 'hit':
            value = (num_hits > 0).to(dtype)
        elif name == 'ndcg':
            discount = 1.0 / (rank + 1).log2()
            dcg = (hits * discount).cumsum(dim=1)[:, idx]
            idcg_table = torch.cat([discount.new_zeros(1), discount.cumsum(0)])
            n_ideal = torch.minimum(num_relevant.clamp(min=1).long(),
                                    k_t.long())  # [B, |ks|]
            value = dcg / idcg_table[n_ideal]
        else:  # 'map'
            ap = (hits * cum_hits / rank).cumsum(dim=1)[:, idx]
            value = ap / torch.minimum(P, k_t)
        value = value * has
        if reduce == 'sum':
            value = value.sum(dim=0)
        for j, k in enumerate(ks):
            values[f'{name}@{k}'] = value[..., j]
    return values


def check_metrics(ks: Sequence[int], metrics: Sequence[str]) -> None:
    r"""Refuses cut-offs that are not positive integers and metric names
    outside :obj:`METRICS`."""
    if len(ks) == 0 or any(int(k) <= 0 for k in ks):
        raise ValueError(f"ks must be positive integers, got {tuple(ks)}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or len(metrics) == 0:
        raise ValueError(f"metrics must be a non-empty subset of {METRICS}, "
                         f"got {tuple(metrics)}")
