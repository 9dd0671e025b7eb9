r"""Normalised user-item adjacencies.

Node ids of the square :math:`(U + I) \times (U + I)` matrix run over users
first, then items (item :math:`i` is node :math:`U + i`).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from .sparse import (
    csr_from_parts,
    degree_power,
    drop_entries,
    to_sparse_csr,
)

NORMALIZATIONS = ('sym', 'row', 'asym', 'none')


def _exponents(normalization: str,
               exponents: Tuple[float, float]) -> Optional[Tuple[float,
                                                                 float]]:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"'normalization' must be one of {NORMALIZATIONS} "
                         f"(got '{normalization}')")
    if normalization == 'sym':
        return (-0.5, -0.5)
    if normalization == 'row':
        return (-1.0, 0.0)
    if normalization == 'asym':
        return (float(exponents[0]), float(exponents[1]))
    return None


def unique_pairs(edge_index: Tensor, num_users: int,
                 num_items: int) -> Tensor:
    r"""Validates (user, item) pairs :obj:`[2, E]` and collapses duplicates;
    the result is sorted by user, then item."""
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' must have shape [2, E] "
                         f"(got {list(edge_index.shape)})")
    edge_index = edge_index.to(torch.long)
    if edge_index.numel() > 0:
        if int(edge_index.min()) < 0:
            raise ValueError("'edge_index' holds negative ids")
        if int(edge_index[0].max()) >= num_users:
            raise ValueError(f"User id {int(edge_index[0].max())} out of "
                             f"range for num_users={num_users}")
        if int(edge_index[1].max()) >= num_items:
            raise ValueError(f"Item id {int(edge_index[1].max())} out of "
                             f"range for num_items={num_items}")
    key = edge_index[0] * num_items + edge_index[1]
    if key.numel() > 1 and not bool((key[1:] > key[:-1]).all()):
        key = torch.unique(key)  # (sorted, distinct input is kept as is)
    return torch.stack([key // num_items, key % num_items])


def bipartite_degrees(edge_index: Tensor, num_users: int,
                      num_items: int) -> Tuple[Tensor, Tensor]:
    r"""Returns the user and item degrees (floating point) of unique
    (user, item) pairs :obj:`[2, E]`."""
    ones = torch.ones(edge_index.size(1), device=edge_index.device)
    deg_u = ones.new_zeros(num_users).index_add_(0, edge_index[0], ones)
    deg_i = ones.new_zeros(num_items).index_add_(0, edge_index[1], ones)
    return deg_u, deg_i


def _scales(edge_index: Tensor, num_users: int, num_items: int,
            exponents: Tuple[float, float], self_loops: bool,
            eps: float, degrees: Optional[Tuple[Tensor, Tensor]] = None
            ) -> Tuple[Tensor, Tensor]:
    # Degree powers (row exponent a, column exponent b) of all U + I nodes.
    deg_u, deg_i = (bipartite_degrees(edge_index, num_users, num_items)
                    if degrees is None else degrees)
    deg = torch.cat([deg_u, deg_i]).to(torch.get_default_dtype())
    if self_loops:
        deg = deg + 1
    a, b = exponents
    return degree_power(deg, a, eps), degree_power(deg, b, eps)


def user_item_values(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    exponents: Tuple[float, float] = (-0.5, -0.5),
    self_loops: bool = False,
    eps: float = 0.0,
) -> Tuple[Tensor, Tensor]:
    r"""Returns the normalised entries :math:`d_u^{a} d_i^{b}` (user row) and
    :math:`d_i^{a} d_u^{b}` (item row) of unique (user, item) pairs
    :obj:`[2, E]`, with degrees of :math:`\mathbf{A}` (+ 1 with
    :obj:`self_loops`), e.g. FREEDOM's pruning weights
    :math:`1/\sqrt{d_u d_i}`."""
    row_scale, col_scale = _scales(edge_index, num_users, num_items,
                                   exponents, self_loops, eps)
    user, item = edge_index[0], edge_index[1] + num_users
    return (row_scale[user] * col_scale[item],
            row_scale[item] * col_scale[user])


def bipartite_adjacency(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    normalization: str = 'sym',
    self_loops: bool = False,
    exponents: Tuple[float, float] = (-0.5, -0.5),
    eps: float = 0.0,
    degrees: Optional[Tuple[Tensor, Tensor]] = None,
) -> Tensor:
    r"""Builds the normalised bipartite adjacency of the user-item graph,

    .. math::
        \mathbf{A} = \begin{pmatrix} \mathbf{0} & \mathbf{R} \\
        \mathbf{R}^{\top} & \mathbf{0} \end{pmatrix}, \qquad
        \tilde{\mathbf{A}}_{ij} = (d_i + \epsilon)^{a} \,
        (\mathbf{A} + \mathbf{I})_{ij} \, (d_j + \epsilon)^{b},

    with :math:`\mathbf{R} \in \{0, 1\}^{U \times I}` the training
    interactions (duplicates collapsed), :math:`d` the degrees of
    :math:`\mathbf{A}` (of :math:`\mathbf{A} + \mathbf{I}` with
    :obj:`self_loops=True`, which also adds the identity). Variants:

    * :obj:`"sym"` without self-loops, :math:`\mathbf{D}^{-1/2} \mathbf{A}
      \mathbf{D}^{-1/2}`: LightGCN, FREEDOM/FMCNS, REARM (FREEDOM adds
      :obj:`eps=1e-7` to the degrees);
    * :obj:`"sym"` with :obj:`self_loops=True`: the GCN normalisation of
      DiffMM, MDMNS and GenRec (equal to
      :func:`~torch_geometric.nn.conv.gcn_conv.gcn_norm` with
      :obj:`add_self_loops=True`);
    * :obj:`"asym"` with :obj:`exponents=(a, b)` and :obj:`self_loops=True`:
      MCLN (e.g. :obj:`(-0.5, -0.4)` for Art and Beauty);
    * :obj:`"row"` (:math:`a=-1, b=0`, rows sum to one) and :obj:`"none"`
      (binary).

    Nodes of zero degree get zero rows and columns, never :obj:`NaN`.

    Args:
        edge_index (torch.Tensor): Training (user, item) pairs :obj:`[2, E]`.
        num_users (int): The number of users :math:`U`.
        num_items (int): The number of items :math:`I`.
        normalization (str, optional): :obj:`"sym"`, :obj:`"row"`,
            :obj:`"asym"` or :obj:`"none"`. (default: :obj:`"sym"`)
        self_loops (bool, optional): Whether to add the identity (and count
            it in the degrees). (default: :obj:`False`)
        exponents ((float, float), optional): :math:`(a, b)`, used by
            :obj:`"asym"` only. (default: :obj:`(-0.5, -0.5)`)
        eps (float, optional): Added to the degrees before the power.
            (default: :obj:`0.0`)
        degrees ((Tensor, Tensor), optional): The user and item degrees
            :obj:`([U], [I])` to normalise with instead of those of
            :obj:`edge_index` (without the self-loop, which is added as
            above): a sampled subgraph's propagation takes the full
            training graph's degrees of its nodes (see
            :func:`subgraph_adjacency`). (default: :obj:`None`)

    Returns:
        A coalesced CSR tensor :obj:`[U + I, U + I]`.
    """
    ab = _exponents(normalization, exponents)
    edge_index = unique_pairs(edge_index, num_users, num_items)
    n = num_users + num_items
    crow, col, row = _bipartite_csr_layout(edge_index, num_users, num_items,
                                           self_loops)
    if ab is None:
        value = torch.ones(col.numel(), device=col.device)
    else:
        row_scale, col_scale = _scales(edge_index, num_users, num_items, ab,
                                       self_loops, eps, degrees)
        value = row_scale[row] * col_scale[col]
    return csr_from_parts(crow, col, value, (n, n))


def _bipartite_csr_layout(edge_index: Tensor, num_users: int,
                          num_items: int, self_loops: bool
                          ) -> Tuple[Tensor, Tensor, Tensor]:
    # The CSR structure (crow [N + 1], col [nnz], and each entry's row) of
    # the symmetric bipartite matrix of unique pairs sorted by (user, item),
    # self-loops optional, laid out directly: a user's row is its loop, then
    # its items; an item's row is its users, then its loop (columns
    # ascending, as a coalesced matrix). No sort of the 2E entries.
    user, item = edge_index[0], edge_index[1]
    device, loops = user.device, int(self_loops)
    n, num_pairs = num_users + num_items, user.numel()
    deg_u = torch.bincount(user, minlength=num_users)
    deg_i = torch.bincount(item, minlength=num_items)
    crow = torch.zeros(n + 1, dtype=torch.long, device=device)
    torch.cumsum(torch.cat([deg_u, deg_i]) + loops, 0, out=crow[1:])
    col = torch.empty(int(crow[-1]), dtype=torch.long, device=device)
    row = torch.empty_like(col)
    arange = torch.arange(num_pairs, device=device)
    # User rows: the pairs in order, after the loop.
    first_u = torch.cumsum(deg_u, 0) - deg_u
    at = crow[user] + loops + (arange - first_u[user])
    col[at], row[at] = item + num_users, user
    # Item rows: the pairs by item (a stable sort keeps users ascending).
    order = torch.sort(item, stable=True).indices
    by_item = item[order]
    first_i = torch.cumsum(deg_i, 0) - deg_i
    at = crow[num_users + by_item] + (arange - first_i[by_item])
    col[at], row[at] = user[order], by_item + num_users
    if loops:
        nodes = torch.arange(n, device=device)
        at = torch.cat([crow[:num_users], crow[num_users + 1:] - 1])
        col[at], row[at] = nodes, nodes
    return crow, col, row


def user_item_matrix(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    normalization: str = 'none',
    self_loops: bool = False,
    exponents: Tuple[float, float] = (-0.5, -0.5),
    eps: float = 0.0,
) -> Tensor:
    r"""Builds the rectangular interaction matrix :math:`\mathbf{R}`
    :obj:`[U, I]` (CSR), i.e. the user-item block of
    :func:`bipartite_adjacency` with the same arguments: entries
    :math:`(d_u + \epsilon)^{a} (d_i + \epsilon)^{b}`.

    Examples: :obj:`"none"` gives binary :math:`\mathbf{R}`; :obj:`"row"`
    gives :math:`\mathbf{D}_u^{-1} \mathbf{R}` (mean over a user's items,
    REARM's user interest features :math:`\mathbf{R}\mathbf{X} / d_u`);
    :obj:`"sym"` with :obj:`self_loops=True` gives GenRec's
    :math:`1/\sqrt{(d_u + 1)(d_i + 1)}`. Use :obj:`.t()` (or build with
    swapped roles) for the item-to-user direction.

    Args:
        edge_index (torch.Tensor): Training (user, item) pairs :obj:`[2, E]`.
        num_users (int): The number of users :math:`U`.
        num_items (int): The number of items :math:`I`.
        normalization (str, optional): :obj:`"sym"`, :obj:`"row"`,
            :obj:`"asym"` or :obj:`"none"`. (default: :obj:`"none"`)
        self_loops (bool, optional): Whether degrees count a self-loop
            (:math:`d + 1`); the block itself has no diagonal.
            (default: :obj:`False`)
        exponents ((float, float), optional): :math:`(a, b)` for
            :obj:`"asym"`. (default: :obj:`(-0.5, -0.5)`)
        eps (float, optional): Added to the degrees. (default: :obj:`0.0`)
    """
    ab = _exponents(normalization, exponents)
    edge_index = unique_pairs(edge_index, num_users, num_items)
    if ab is None:
        value = torch.ones(edge_index.size(1), device=edge_index.device)
    else:
        value, _ = user_item_values(edge_index, num_users, num_items, ab,
                                    self_loops, eps)
    return to_sparse_csr(edge_index, value, (num_users, num_items))


def generated_adjacency(items: Tensor, num_users: int, num_items: int,
                        keep_rate: float = 1.0,
                        seed: Optional[int] = None) -> Tensor:
    r"""The graph of generated user-item edges (DiffMM, MDMNS, GenRec):
    user :math:`u` to each item :obj:`items[u]` (:obj:`[U, k]`; negative
    entries mean no edge), self-looped and GCN-normalised by
    :func:`bipartite_adjacency`, then every entry (self-loops included)
    kept with probability :obj:`keep_rate` and rescaled by its inverse
    (:func:`~pyg_mmrec.graphs.drop_entries`, under a generator seeded with
    :obj:`seed`)."""
    if items.dim() != 2 or items.size(0) != num_users:
        raise ValueError(f"'items' must have shape [{num_users}, k] "
                         f"(got {tuple(items.shape)})")
    users = torch.arange(num_users, device=items.device)
    edge_index = torch.stack([users.repeat_interleave(items.size(1)),
                              items.reshape(-1)])
    if bool((items < 0).any()):
        edge_index = edge_index[:, edge_index[1] >= 0]
    adj = bipartite_adjacency(edge_index, num_users, num_items,
                              self_loops=True)
    gen = torch.Generator(device=adj.device)
    if seed is not None:
        gen.manual_seed(int(seed))
    return drop_entries(adj, keep_rate, generator=gen)


def subgraph_adjacency(subgraph, degrees: Tuple[Tensor, Tensor],
                       edge_index: Optional[Tensor] = None,
                       **kwargs) -> Tensor:
    r"""The normalised adjacency of a sampled subgraph with the
    normalisation weights of the full training graph: its edges (local
    ids), weighted by the global degrees :obj:`degrees` of its nodes, so
    that a user whose whole neighbourhood was sampled aggregates exactly as
    on the full graph, and a subgraph holding the whole graph reproduces
    the full-graph propagation (DESIGN, "Scale").

    Args:
        subgraph (Subgraph): The sampled subgraph (:obj:`user_id`,
            :obj:`item_id`, local :obj:`edge_index`).
        degrees ((Tensor, Tensor)): The full graph's user and item degrees
            :obj:`([U], [I])`, indexed by global id.
        edge_index (Tensor, optional): Local edges to use instead of the
            subgraph's (*e.g.* those an epoch's pruning kept).
        **kwargs: The normalisation of :func:`bipartite_adjacency`.
    """
    deg_u, deg_i = degrees
    return bipartite_adjacency(
        subgraph.edge_index if edge_index is None else edge_index,
        subgraph.num_users, subgraph.num_items,
        degrees=(deg_u[subgraph.user_id], deg_i[subgraph.item_id]), **kwargs)
