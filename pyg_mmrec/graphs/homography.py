r"""Homography (user-user and item-item) graphs from the training
interactions and the item features, as REARM builds them: co-occurrence
top-:math:`k` graphs, users' interest features and their kNN graphs, and the
mixtures of both."""
from typing import Mapping, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.utils import softmax

from .cooccurrence import (
    capped_cooccurrence_topk,
    cooccurrence_graph,
    topk_entries_per_row,
)
from .knn import knn_adjacency
from .pairs import PairIndex
from .sparse import expand_runs, to_sparse_csr, weighted_sum

SIDES = ('user', 'item')


def cooccurrence_topk(graph: PairIndex, side: str, k: int,
                      generator: Optional[torch.Generator] = None,
                      cap: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    r"""Every node's top :math:`k` co-neighbours (nodes of its side sharing
    training interactions with it) by co-occurrence count: the
    :obj:`(edge_index, count)` of :func:`topk_entries_per_row` of
    :func:`cooccurrence_graph` (rows in order, counts decreasing, ties
    towards the lower id; :obj:`float64` counts), or with :obj:`cap` of
    :obj:`capped_cooccurrence_topk` (by
    blocks of rows, never every co-occurring pair).

    Args:
        graph (PairIndex): The training graph.
        side (str): :obj:`"user"` or :obj:`"item"`.
        k (int): Co-neighbours kept per node.
        generator (torch.Generator, optional): Random generator of the
            capped sample. (default: :obj:`None`)
        cap (int, optional): Co-occurring nodes considered per shared node.
            (default: :obj:`None`, all: exact)
    """
    if side not in SIDES:
        raise ValueError(f"'side' must be one of {SIDES} (got '{side}')")
    if cap is None:
        counts = cooccurrence_graph(graph.edge_index, graph.num_users,
                                    graph.num_items, side=side,
                                    dtype=torch.float64)
        return topk_entries_per_row(counts, k)
    return capped_cooccurrence_topk(
        graph.edge_index, graph.num_users, graph.num_items, k, cap,
        side=side, generator=generator)


def urn_padded_slots(edge_index: Tensor, count: Tensor, n: int, k: int,
                     generator: Optional[torch.Generator] = None
                     ) -> Tuple[Tensor, Tensor]:
    r"""DRAGON's :math:`k` neighbour slots per node from ranked
    co-neighbour lists (:func:`cooccurrence_topk`): a node with at least
    :math:`k` co-neighbours keeps its first :math:`k`; one with
    :math:`1 \le n_u < k` keeps all and fills slot :math:`j = n_u, \ldots,
    k - 1` with a copy (neighbour and count) of a uniformly drawn slot
    among :math:`0, \ldots, j - 1` (a P\'olya urn: the padded list grows
    as it is drawn from, as the original's :obj:`topk_sample`); one with
    none gets no neighbour.

    Args:
        edge_index (torch.Tensor): Ranked lists :obj:`[2, E]` (rows in
            order, each row's entries in rank order).
        count (torch.Tensor): Their counts :obj:`[E]`.
        n (int): Number of nodes.
        k (int): Slots per node.
        generator (torch.Generator, optional): Random generator of the
            draws. (default: :obj:`None`)

    Returns:
        (neighbors, count): :obj:`[n, k]` each; a node without
        co-neighbour has neighbours :obj:`-1` and counts :obj:`-inf`.
    """
    row, col = edge_index
    total = torch.bincount(row, minlength=n)
    have, starts = total.clamp(max=k), total.cumsum(0) - total
    rank = torch.arange(row.numel(), device=row.device) - starts[row]
    kept = rank < k
    neighbors = torch.full((n, k), -1, dtype=torch.long, device=row.device)
    counts = torch.full((n, k), float('-inf'), dtype=count.dtype,
                        device=row.device)
    neighbors[row[kept], rank[kept]] = col[kept]
    counts[row[kept], rank[kept]] = count[kept]
    short = ((have > 0) & (have < k)).nonzero().view(-1)
    for j in range(1, k):
        rows = short[have[short] <= j]
        if rows.numel() == 0:
            continue
        pick = torch.rand(rows.numel(), generator=generator,
                          dtype=torch.float64).to(row.device)
        at = (pick * j).long().clamp_(max=j - 1)
        neighbors[rows, j] = neighbors[rows, at]
        counts[rows, j] = counts[rows, at]
    return neighbors, counts


def cooccurrence_topk_graph(graph: PairIndex, side: str, k: int,
                            generator: Optional[torch.Generator] = None,
                            cap: Optional[int] = None) -> Tensor:
    r"""REARM's co-occurrence graph: every node keeps :math:`k` co-neighbours
    (nodes of its side sharing training interactions with it), weighted by a
    softmax over their co-occurrence counts :math:`c`,

    .. math::
        a_{ij} = \sum_{s : j_s = j} \frac{\exp(c_s)}{\sum_{t=1}^{k}
        \exp(c_t)}, \qquad s = 1, \ldots, k,

    over the node's :math:`k` slots :math:`(j_s, c_s)`:

    * with :math:`\ge k` co-neighbours, its top :math:`k` by count (ties:
      lower id first);
    * with :math:`1 \ldots k - 1`, all of them, padded to :math:`k` slots by
      drawing uniformly **with replacement** among them (index and count
      together; drawn from :obj:`generator`);
    * with none, the :math:`k` nodes of the side with the most training
      interactions (possibly the node itself), with :math:`c_s` their
      degrees divided by the sum of those :math:`k` degrees.

    Slots with the same node add up, so every row has at most :math:`k`
    entries and sums to :math:`1` (row-stochastic, not symmetric). The counts
    are a sparse product (:func:`cooccurrence_graph`), never an
    :math:`n \times n` matrix.

    With :obj:`cap`, the co-neighbours are counted by blocks of rows,
    each node meeting at most :obj:`cap` others through each node of the
    other side (:obj:`capped_cooccurrence_topk`: a seeded sample of a
    more popular one's, drawn from :obj:`generator` before the padding
    draws, and only when some node exceeds the cap): the graph is then
    exact when the cap is not binding, and its build never holds all
    :math:`\sum_i d_i^2` co-occurring pairs of a power-law graph.

    Args:
        graph (PairIndex): The training graph
            (:func:`~pyg_mmrec.graphs.train_graph`).
        side (str): :obj:`"user"` (:obj:`[U, U]`) or :obj:`"item"`
            (:obj:`[I, I]`).
        k (int): Slots per node.
        generator (torch.Generator, optional): Random generator of the
            padding draws. (default: :obj:`None`)
        cap (int, optional): Co-occurring nodes considered per shared node.
            (default: :obj:`None`, all: exact)

    Returns:
        A CSR tensor :obj:`[n, n]`.
    """
    if k < 1:
        raise ValueError(f"'k' must be positive (got {k})")
    n = graph.num_users if side == 'user' else graph.num_items
    (row, col), value = cooccurrence_topk(graph, side, k, generator, cap)
    have = torch.bincount(row, minlength=n)
    starts = torch.cat([have.new_zeros(1), have.cumsum(0)[:-1]])

    # Rows with 1..k-1 co-neighbours: k - have draws among their own.
    short = ((have > 0) & (have < k)).nonzero().view(-1)
    need = k - have[short]
    slot, _ = expand_runs(torch.zeros_like(need), need)
    pick = torch.rand(slot.numel(), generator=generator, dtype=torch.float64)
    offset = (pick * have[short][slot]).long().clamp_(
        max=have[short][slot] - 1)
    at = starts[short][slot] + offset
    pad_row, pad_col, pad_value = row[at], col[at], value[at]

    # Rows without co-neighbours: the k most-interacted nodes.
    degree = (graph.user_degree() if side == 'user' else
              graph.item_degree()).to(torch.float64)
    top = torch.sort(degree, descending=True, stable=True).indices[:k]
    lonely = (have == 0).nonzero().view(-1)
    top_weight = degree[top] / degree[top].sum().clamp(min=1.0)
    lone_row = lonely.repeat_interleave(top.numel())
    lone_col = top.repeat(lonely.numel())
    lone_value = top_weight.repeat(lonely.numel())

    row = torch.cat([row, pad_row, lone_row])
    col = torch.cat([col, pad_col, lone_col])
    weight = softmax(torch.cat([value, pad_value, lone_value]), row,
                     num_nodes=n)
    return to_sparse_csr(torch.stack([row, col]),
                         weight.to(torch.get_default_dtype()), n)


def interest_features(graph: PairIndex, x: Tensor) -> Tensor:
    r"""Users' "interest" features, the mean of their training items'
    features,

    .. math::
        \mathbf{u}_u = \frac{1}{|\mathcal{N}(u)|}
        \sum_{i \in \mathcal{N}(u)} \mathbf{x}_i,

    (a zero row for a user without training items).

    Args:
        graph (PairIndex): The training graph.
        x (torch.Tensor): Item features :obj:`[I, F]`.

    Returns:
        torch.Tensor: :obj:`[U, F]`.
    """
    if x.size(0) != graph.num_items:
        raise ValueError(f"'x' must have {graph.num_items} rows (got "
                         f"{x.size(0)})")
    # A sparse product with the row-normalised interactions: no [E, F]
    # gather of the items' rows (3 GB for Clothing's 4096-d features).
    edge_index = graph.edge_index.to(x.device)
    degree = graph.user_degree().to(x.device).clamp(min=1).to(x.dtype)
    mean = to_sparse_csr(edge_index, degree[edge_index[0]].reciprocal(),
                         (graph.num_users, graph.num_items))
    return torch.sparse.mm(mean, x)


def similarity_graph(features: Mapping[str, Tensor], k: int,
                     image_weight: float,
                     max_dim: Optional[int] = None,
                     method: str = 'auto') -> Tensor:
    r"""REARM's similarity graph of one side: per modality the cosine
    :math:`k`-NN graph (self included) with entries :math:`s_{ij} / k`
    (:func:`~pyg_mmrec.graphs.knn_adjacency` with similarity weights and
    binary degrees), mixed as
    :math:`w \mathbf{S}_{image} + (1 - w) \mathbf{S}_{other}`.

    Args:
        features (Mapping[str, torch.Tensor]): Exactly two modalities'
            features :obj:`[n, F_m]`; :obj:`"image"` is the one weighted by
            :obj:`image_weight` (or, without image, the first).
        k (int): Neighbours per node.
        image_weight (float): :math:`w \in [0, 1]`.
        max_dim (int, optional): Search the neighbours of features wider
            than this in a principal projection (approximate, see
            :func:`~pyg_mmrec.graphs.knn_graph`). (default: :obj:`None`)
        method (str, optional): The :func:`~pyg_mmrec.graphs.knn_graph`
            back-end; :obj:`"ivf"` searches approximately, for graphs of
            hundreds of thousands of nodes. (default: :obj:`"auto"`, exact)
    """
    if len(features) != 2:
        raise ValueError(f"the similarity graph mixes two modalities (got "
                         f"{list(features)})")
    if not 0.0 <= image_weight <= 1.0:
        raise ValueError(f"'image_weight' must be in [0, 1] (got "
                         f"{image_weight})")
    first = 'image' if 'image' in features else next(iter(features))
    other = next(m for m in features if m != first)
    # A modality weighted 0 is not searched (Baby's item graph is text only:
    # its 4096-d image kNN would be most of the build):
    weights = {m: w for m, w in ((first, image_weight),
                                 (other, 1.0 - image_weight)) if w > 0}
    mats = [knn_adjacency(features[m], k, weighting='similarity',
                          normalization='sym', degree='binary', loop=True,
                          max_dim=max_dim, method=method)
            for m in weights]
    return weighted_sum(mats, list(weights.values()))


def mixed_knn_adjacency(features: Mapping[str, Tensor], k: int,
                        weights: Mapping[str, float],
                        method: str = 'auto') -> Tensor:
    r"""FREEDOM's (and DRAGON's) frozen item graph
    :math:`\sum_m w_m \mathbf{S}_m`: per modality the binary cosine
    :math:`k`-NN graph of the raw features (self included), symmetrically
    normalised by its row degrees (every entry :math:`1/k`), weighted by
    :obj:`weights` (the modalities it names).

    Args:
        features (Mapping[str, torch.Tensor]): Item features :obj:`[I, F_m]`.
        k (int): Neighbours per item.
        weights (Mapping[str, float]): :math:`w_m` of each modality used.
        method (str, optional): The :func:`~pyg_mmrec.graphs.knn_graph`
            back-end. (default: :obj:`"auto"`)
    """
    return weighted_sum(
        [knn_adjacency(features[m], k, weighting='binary',
                       normalization='sym', loop=True, method=method)
         for m in weights], list(weights.values()))


def homography_graphs(graph: PairIndex, item_features: Mapping[str, Tensor],
                      user_k: int, item_k: int, user_image_weight: float,
                      item_image_weight: float, user_co_weight: float,
                      item_co_weight: float,
                      generator: Optional[torch.Generator] = None,
                      max_dim: Optional[int] = None,
                      cooccurrence_cap: Optional[int] = None,
                      knn_method: str = 'auto') -> Tuple[Tensor, Tensor]:
    r"""REARM's homogeneous graphs, from the training interactions only,

    .. math::
        \mathbf{G}_{uu} = c_u \mathbf{Co}_{user} + (1 - c_u)
        \mathbf{S}_{user}, \qquad
        \mathbf{G}_{ii} = c_i \mathbf{Co}_{item} + (1 - c_i)
        \mathbf{S}_{item},

    with :math:`\mathbf{Co}` the co-occurrence graphs
    (:func:`cooccurrence_topk_graph`) and :math:`\mathbf{S}` the similarity
    graphs (:func:`similarity_graph`) of the item features and of the users'
    interest features (:func:`interest_features`); :obj:`max_dim` and
    :obj:`knn_method="ivf"` make their neighbour search approximate (see
    :func:`similarity_graph`), and
    :obj:`cooccurrence_cap` caps the co-occurring nodes counted per shared
    node (see :func:`cooccurrence_topk_graph`'s :obj:`cap`).

    Returns:
        (G_uu, G_ii): CSR tensors :obj:`[U, U]` and :obj:`[I, I]`.
    """
    for name, value in (('user_co_weight', user_co_weight),
                        ('item_co_weight', item_co_weight)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"'{name}' must be in [0, 1] (got {value})")

    def mix(co: Tensor, weight: float, similarity) -> Tensor:
        # Co-occurrence is always built (cheap, and its padding draws keep
        # the generator's order); the kNN search only when it is weighted.
        if weight == 1.0:
            return co
        return weighted_sum([co, similarity()], [weight, 1.0 - weight])

    user_features = {m: interest_features(graph, x)
                     for m, x in item_features.items()}
    g_uu = mix(cooccurrence_topk_graph(graph, 'user', user_k, generator,
                                       cooccurrence_cap),
               user_co_weight, lambda: similarity_graph(
                   user_features, user_k, user_image_weight, max_dim,
                   knn_method))
    g_ii = mix(cooccurrence_topk_graph(graph, 'item', item_k, generator,
                                       cooccurrence_cap),
               item_co_weight, lambda: similarity_graph(
                   item_features, item_k, item_image_weight, max_dim,
                   knn_method))
    return g_uu, g_ii
