r"""k-nearest-neighbour graphs over item (or user) features.

Two exact back-ends compute the same neighbours:

* :obj:`"matmul"`: row-normalise, multiply a chunk of rows with all rows and
  take the top-:math:`k` of each row. Memory is :math:`O(\text{chunk} \cdot
  n)`, never :math:`n \times n`. Ties are broken towards the lower index,
  deterministically.
* :obj:`"cluster"`: :func:`torch_cluster.knn` (a KD-tree on CPU, a brute
  force kernel on GPU) on L2-normalised rows, whose Euclidean order equals
  the cosine order. Tie-breaking among equal distances is the kernel's.

:obj:`method="ivf"` is approximate: an inverted file
(:mod:`pyg_mmrec.graphs.ivf`) compares each row with the rows of its
:obj:`num_probes` nearest :math:`k`-means cells only, for graphs whose
:math:`n^2` comparisons are out of reach (hundreds of thousands of rows).

:obj:`method="auto"` takes :obj:`"cluster"` only for CUDA inputs when
:mod:`torch_cluster` is installed (and :math:`k \le 100`, the limit of its
CUDA kernel), and :obj:`"matmul"` otherwise: on CPU the KD-tree measured
12 s (384-d) and 145 s (4096-d) for 7,050 items, against 0.4 s and 1.1 s
for the chunked matmul.

With :obj:`max_dim`, neighbours of high-dimensional rows are searched in a
projection of the unit rows onto their top :obj:`max_dim` right singular
vectors (a seeded randomised SVD, :func:`torch.svd_lowrank`), which cuts
the :math:`O(n^2 d)` products to :math:`O(n^2 \cdot \text{max\_dim})`:
the projection proposes :obj:`rerank` :math:`\cdot\, k` candidates per
node, their exact cosine similarities (one sampled dense-dense product,
:func:`torch.sparse.sampled_addmm`, :math:`O(n \cdot \text{rerank} \cdot k
\cdot d)`) pick the :math:`k`. The neighbour sets are then approximate
(measured against the exact ones by ``experiments/bench_homography.py``).
"""
import warnings
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..typing import WITH_TORCH_CLUSTER
from .ivf import ivf_knn
from .sparse import normalize_edge_weight, to_sparse_csr

METHODS = ('auto', 'matmul', 'cluster', 'ivf')
WEIGHTINGS = ('binary', 'similarity')
DEGREES = ('weighted', 'binary')

#: Elements of one [chunk, n] similarity block built by the matmul back-end.
_CHUNK_ELEMENTS = 1 << 24
_CLUSTER_CUDA_MAX_K = 100


def _unit_rows(x: Tensor) -> Tensor:
    # All-zero rows stay zero (cosine 0 to everything), never NaN:
    norm = x.norm(p=2, dim=-1, keepdim=True)
    return x / norm.clamp_min(torch.finfo(x.dtype).tiny)


def _check_k(k: int, n: int, loop: bool) -> None:
    if k < 1:
        raise ValueError(f"'k' must be positive (got {k})")
    available = n if loop else n - 1
    if k > available:
        raise ValueError(f"Cannot pick k={k} neighbours among {n} nodes "
                         f"(loop={loop})")


def _resolve_method(x: Tensor, method: str, num_query: int) -> str:
    if method not in METHODS:
        raise ValueError(f"'method' must be one of {METHODS} "
                         f"(got '{method}')")
    # torch_cluster's CUDA kernel accepts at most 100 neighbours per query:
    cuda_ok = not x.is_cuda or num_query <= _CLUSTER_CUDA_MAX_K
    if method == 'auto':
        use_cluster = x.is_cuda and WITH_TORCH_CLUSTER and cuda_ok
        return 'cluster' if use_cluster else 'matmul'
    if method == 'cluster' and not WITH_TORCH_CLUSTER:
        raise ImportError("knn_graph(method='cluster') requires the "
                          "'torch_cluster' package; use method='matmul'")
    if method == 'cluster' and not cuda_ok:
        raise ValueError(f"torch_cluster's CUDA kNN supports at most "
                         f"{_CLUSTER_CUDA_MAX_K} neighbours per node (got "
                         f"{num_query} with the node itself); use "
                         f"method='matmul'")
    return method


def _chunk_topk(sim: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    # Top-k per row, descending, ties broken towards the lower column index.
    if k < sim.size(1):
        # A tie on the boundary (duplicates, all-zero rows) is a (k+1)-th
        # value equal to the k-th: one wider top-k finds it, where counting
        # the entries >= the k-th value took longer than the product itself.
        val, idx = sim.topk(k + 1, dim=1)
        tied = val[:, k] == val[:, k - 1]
        val, idx = val[:, :k], idx[:, :k]
    else:
        val, idx = sim.topk(k, dim=1)
        tied = torch.zeros(sim.size(0), dtype=torch.bool, device=sim.device)
    # Resolve boundary ties by a stable sort of the row.
    if bool(tied.any()):
        rows = tied.nonzero().view(-1)
        s_val, s_idx = sim[rows].sort(dim=1, descending=True, stable=True)
        val[rows], idx[rows] = s_val[:, :k], s_idx[:, :k]
    # `topk` does not promise an order among equal values inside the top-k
    # either; order those by index as well:
    inner = (val[:, 1:] == val[:, :-1]).any(dim=1)
    if bool(inner.any()):
        rows = inner.nonzero().view(-1)
        perm = torch.argsort(idx[rows], dim=1)
        v, i = val[rows].gather(1, perm), idx[rows].gather(1, perm)
        order = v.sort(dim=1, descending=True, stable=True)[1]
        val[rows], idx[rows] = v.gather(1, order), i.gather(1, order)
    return val, idx


def _knn_matmul(x: Tensor, k: int, loop: bool, cosine: bool,
                chunk_size: Optional[int]) -> Tuple[Tensor, Tensor]:
    n = x.size(0)
    if cosine:
        x = _unit_rows(x)
    else:
        sq_norm = (x * x).sum(dim=-1)
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // max(n, 1))
    # Written in place: many small per-block outputs between the large
    # temporary blocks would fragment glibc's heap (measured at 1M items:
    # +15 MiB of peak per block with lists of blocks).
    val = x.new_empty(n, k)
    col = torch.empty(n, k, dtype=torch.long, device=x.device)
    for start in range(0, n, chunk_size):
        end = min(start + chunk_size, n)
        sim = x[start:end] @ x.t()
        if not cosine:  # negative squared Euclidean distance:
            sim = 2 * sim - sq_norm[start:end, None] - sq_norm[None, :]
        arange = torch.arange(end - start, device=x.device)
        diag = arange + start
        self_sim = sim[arange, diag].clone()
        # Rank the node itself first (loop=True) or last (loop=False):
        sim[arange, diag] = float('inf') if loop else float('-inf')
        block_val, block_col = _chunk_topk(sim, k)
        if loop:
            block_val[:, 0] = self_sim
        val[start:end], col[start:end] = block_val, block_col
        del sim, block_val, block_col
    if not cosine:  # exact distances of the kept pairs (no cancellation):
        val = _pair_values(x, col, cosine=False)
    return val, col


def principal_projection(x: Tensor, dim: int, seed: int = 0) -> Tensor:
    r"""The rows of :obj:`x` :obj:`[n, d]` projected onto its top
    :obj:`dim` right singular vectors, :math:`\mathbf{X}\mathbf{V}_{dim}`
    (no centring, so that inner products are approximated best), by
    :func:`torch.svd_lowrank` (two power iterations) under a fixed seed;
    the global random state is left untouched."""
    devices = [x.device] if x.is_cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        _, _, v = torch.svd_lowrank(x, q=min(dim + 10, *x.shape), niter=2)
    return x @ v[:, :dim]


def _pair_values(x: Tensor, col: Tensor, cosine: bool) -> Tensor:
    # Dot products (cosine) or negative Euclidean distances between each row
    # i and its neighbours col[i] :obj:`[n, k]` (distinct within a row).
    n, k = col.shape
    if cosine:
        # The rows of x x^T sampled at col, without gathering an [n, k, d]
        # copy of the neighbours' rows (10x faster at 4096-d, no memory):
        sorted_col, order = col.sort(dim=1)
        crow = torch.arange(0, n * k + 1, k, device=col.device)
        with warnings.catch_warnings():  # "CSR support is in beta"
            warnings.filterwarnings('ignore', 'Sparse CSR tensor support')
            pattern = torch.sparse_csr_tensor(crow, sorted_col.reshape(-1),
                                              x.new_zeros(n * k), (n, n),
                                              check_invariants=False)
            dots = torch.sparse.sampled_addmm(pattern, x, x.t(), beta=0.0)
        out = torch.empty_like(dots.values().view(n, k))
        return out.scatter_(1, order, dots.values().view(n, k))
    step = max(1, _CHUNK_ELEMENTS // max(k * x.size(1), 1))
    out = []
    for start in range(0, n, step):
        query = x[start:start + step, None]
        other = x[col[start:start + step]]
        out.append(-(query - other).norm(p=2, dim=-1))
    return torch.cat(out, dim=0)


def _knn_cluster(x: Tensor, k: int, loop: bool,
                 cosine: bool) -> Tuple[Tensor, Tensor]:
    import torch_cluster

    n = x.size(0)
    if cosine:
        x = _unit_rows(x)
        # Place all-zero rows on an extra axis: every row is then a unit
        # vector and a zero row is orthogonal to the others (cosine 0, as
        # in the matmul back-end), so the Euclidean order is the cosine one.
        zero = (x.abs().sum(dim=-1, keepdim=True) == 0).to(x.dtype)
        pts = torch.cat([x, zero], dim=-1) if bool(zero.any()) else x
    else:
        pts = x
    num_query = k if loop else k + 1
    pts = pts.contiguous()
    row, col = torch_cluster.knn(pts, pts, num_query)
    if row.numel() != n * num_query:
        raise RuntimeError(f"torch_cluster.knn returned {row.numel()} pairs, "
                           f"expected {n * num_query}")
    perm = torch.argsort(row, stable=True)
    col = col[perm].view(n, num_query)
    src = torch.arange(n, device=x.device).view(-1, 1)
    sim = _pair_values(x, col, cosine)
    # Drop the node itself from its candidates (it may be missing there when
    # it has duplicates) and keep the best non-self neighbours:
    key = sim.masked_fill(col == src, float('-inf'))
    num_other = k - 1 if loop else k
    key, order = key.sort(dim=1, descending=True, stable=True)
    order = order[:, :num_other]
    col, sim = col.gather(1, order), sim.gather(1, order)
    if loop:
        if cosine:
            self_sim = (x * x).sum(dim=-1, keepdim=True)
        else:
            self_sim = x.new_zeros(n, 1)
        col = torch.cat([src, col], dim=1)
        sim = torch.cat([self_sim, sim], dim=1)
    return sim, col


@torch.no_grad()
def knn_graph(
    x: Tensor,
    k: int,
    loop: bool = True,
    cosine: bool = True,
    method: str = 'auto',
    chunk_size: Optional[int] = None,
    max_dim: Optional[int] = None,
    rerank: int = 2,
    num_probes: int = 16,
    num_lists: Optional[int] = None,
) -> Tuple[Tensor, Tensor]:
    r"""Computes the :math:`k`-nearest-neighbour graph of the rows of
    :obj:`x`,

    .. math::
        \mathcal{N}_k(i) = \operatorname{top-}k_{j}\;
        \frac{\mathbf{x}_i^{\top} \mathbf{x}_j}
        {\|\mathbf{x}_i\| \, \|\mathbf{x}_j\|},

    as used by FREEDOM/FMCNS, REARM and GenRec for item-item modality graphs.
    With :obj:`loop=True` (the originals' behaviour: their top-:math:`k`
    runs over a similarity matrix whose diagonal is one) every node is its
    own first neighbour; with :obj:`loop=False` it is excluded. An all-zero
    row has cosine :math:`0` to every node (no :obj:`NaN`). No gradient is
    recorded.

    Args:
        x (torch.Tensor): Node features :obj:`[n, d]`.
        k (int): Neighbours per node (the node itself included when
            :obj:`loop=True`).
        loop (bool, optional): Whether each node is among its own
            neighbours. (default: :obj:`True`)
        cosine (bool, optional): Cosine similarity if :obj:`True`, else
            Euclidean distance (the returned values are then the negative
            distances). (default: :obj:`True`)
        method (str, optional): :obj:`"matmul"`, :obj:`"cluster"`,
            :obj:`"ivf"` (approximate, cosine only) or :obj:`"auto"` (see
            the module docstring). (default: :obj:`"auto"`)
        chunk_size (int, optional): Rows per block of the :obj:`"matmul"`
            back-end; when :obj:`None`, about :math:`2^{24} / n` rows so a
            block holds 16M entries. (default: :obj:`None`)
        max_dim (int, optional): If set and :obj:`x` has more columns,
            search the neighbours in a :obj:`max_dim`-dimensional principal
            projection (approximate; see the module docstring; cosine
            only). (default: :obj:`None`, exact)
        rerank (int, optional): With :obj:`max_dim`, candidates per node
            searched in the projection, as a multiple of :math:`k`; their
            exact similarities pick the :math:`k`. (default: :obj:`2`)
        num_probes (int, optional): With :obj:`method="ivf"`, the cells
            searched per node. (default: :obj:`16`)
        num_lists (int, optional): With :obj:`method="ivf"`, the cells of
            the index. (default: :math:`\lceil 4 \sqrt{n} \rceil`)

    Returns:
        (edge_index, similarity): :obj:`edge_index[0]` holds the query
        nodes in ascending order, :math:`k` per node, and
        :obj:`edge_index[1]` their neighbours by decreasing similarity;
        :obj:`similarity` holds the :obj:`[n * k]` cosine similarities.
    """
    if x.dim() != 2:
        raise ValueError(f"'x' must be two-dimensional (got {x.dim()} dims)")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    n = x.size(0)
    _check_k(k, n, loop)
    project = max_dim is not None and x.size(1) > max_dim
    if max_dim is not None and max_dim < 1:
        raise ValueError(f"'max_dim' must be positive (got {max_dim})")
    if project and not cosine:
        raise ValueError("'max_dim' needs cosine=True")
    if rerank < 1:
        raise ValueError(f"'rerank' must be positive (got {rerank})")
    if method == 'ivf' and not cosine:
        raise ValueError("method='ivf' needs cosine=True")
    # The projection proposes rerank * k candidates (as many as there are):
    search_k = min(rerank * k, n if loop else n - 1) if project else k
    method = _resolve_method(x, method, search_k if loop else search_k + 1)
    if project:  # the unit rows serve the projection and the re-ranking
        unit = _unit_rows(x)
        query = principal_projection(unit, max_dim)
    else:
        query = x
    if method == 'matmul':
        sim, col = _knn_matmul(query, search_k, loop, cosine, chunk_size)
    elif method == 'ivf':
        sim, col = ivf_knn(_unit_rows(query), search_k, loop,
                           num_probes=num_probes, num_lists=num_lists)
    else:
        sim, col = _knn_cluster(query, search_k, loop, cosine)
    if project:  # the k candidates of highest exact similarity, decreasing
        sim = _pair_values(unit, col, cosine=True)
        del unit
        first = 1 if loop else 0  # the node itself stays first
        rest, order = sim[:, first:].sort(dim=1, descending=True, stable=True)
        order = order[:, :k - first]
        sim = torch.cat([sim[:, :first], rest[:, :k - first]], dim=1)
        col = torch.cat([col[:, :first], col[:, first:].gather(1, order)],
                        dim=1)
    row = torch.arange(n, device=x.device).repeat_interleave(k)
    return torch.stack([row, col.reshape(-1)]), sim.reshape(-1)


def knn_adjacency(
    x: Tensor,
    k: int,
    weighting: str = 'binary',
    normalization: str = 'sym',
    degree: str = 'weighted',
    loop: bool = True,
    method: str = 'auto',
    chunk_size: Optional[int] = None,
    max_dim: Optional[int] = None,
    rerank: int = 2,
    num_probes: int = 16,
) -> Tensor:
    r"""Builds a normalised cosine :math:`k`-NN adjacency :obj:`[n, n]` (CSR)
    from the rows of :obj:`x` (see :func:`knn_graph`).

    With :math:`s_{ij}` the cosine similarity of a kept pair, the entry is
    :math:`w_{ij} = 1` (:obj:`weighting="binary"`) or :math:`w_{ij} =
    s_{ij}` (:obj:`weighting="similarity"`), normalised by row degrees
    :math:`d_i` that count entries (:obj:`degree="binary"`, :math:`d_i = k`)
    or sum weights (:obj:`degree="weighted"`, :math:`d_i = \sum_j w_{ij}`):

    .. math::
        \tilde{w}_{ij} = d_i^{-1/2} \, w_{ij} \, d_j^{-1/2} \;\;
        (\text{"sym"}), \qquad
        \tilde{w}_{ij} = d_i^{-1} \, w_{ij} \;\; (\text{"row"}).

    The originals use:

    * FREEDOM / FMCNS: :obj:`weighting="binary"`, :obj:`"sym"` (every entry
      :math:`1/k`);
    * REARM: :obj:`weighting="similarity"`, :obj:`"sym"`,
      :obj:`degree="binary"` (every entry :math:`s_{ij}/k`);
    * GenRec: :obj:`weighting="similarity"`, :obj:`"sym"`,
      :obj:`degree="weighted"`.

    For binary weights both degrees coincide. A row whose weighted degree is
    not positive (possible only with negative similarities) becomes a zero
    row instead of :obj:`NaN`.

    Args:
        x (torch.Tensor): Node features :obj:`[n, d]`.
        k (int): Neighbours per node.
        weighting (str, optional): :obj:`"binary"` or :obj:`"similarity"`.
            (default: :obj:`"binary"`)
        normalization (str, optional): :obj:`"sym"`, :obj:`"row"` or
            :obj:`"none"`. (default: :obj:`"sym"`)
        degree (str, optional): :obj:`"weighted"` or :obj:`"binary"`.
            (default: :obj:`"weighted"`)
        loop (bool, optional): Whether each node is its own neighbour.
            (default: :obj:`True`)
        method (str, optional): :func:`knn_graph` back-end.
            (default: :obj:`"auto"`)
        chunk_size (int, optional): :func:`knn_graph` block size.
            (default: :obj:`None`)
        max_dim (int, optional): :func:`knn_graph`'s projection for an
            approximate search. (default: :obj:`None`, exact)
        rerank (int, optional): :func:`knn_graph`'s candidates per
            neighbour in that search. (default: :obj:`2`)
        num_probes (int, optional): :func:`knn_graph`'s cells searched per
            node with :obj:`method="ivf"`. (default: :obj:`16`)
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"'weighting' must be one of {WEIGHTINGS} "
                         f"(got '{weighting}')")
    if degree not in DEGREES:
        raise ValueError(f"'degree' must be one of {DEGREES} "
                         f"(got '{degree}')")
    n = x.size(0)
    edge_index, sim = knn_graph(x, k, loop=loop, cosine=True, method=method,
                                chunk_size=chunk_size, max_dim=max_dim,
                                rerank=rerank, num_probes=num_probes)
    if weighting == 'binary':
        weight = torch.ones_like(sim)
    else:
        weight = sim
    if degree == 'binary' and weighting == 'similarity':
        scale = normalize_edge_weight(edge_index, None, n, normalization)
        weight = scale.to(weight.dtype) * weight
    else:
        weight = normalize_edge_weight(edge_index, weight, n, normalization)
    return to_sparse_csr(edge_index, weight, n)
