r"""Each user's top-:math:`K` items from a model's scores: exact
(:func:`top_k`) or through an approximate inner-product index
(:func:`inner_product_top_k`)."""
import itertools
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..graphs import PairIndex
from ..graphs.sparse import expand_runs
from ..models import Recommender


def check_users(users: Tensor, num_users: int) -> None:
    bad = users[(users < 0) | (users >= num_users)]
    if bad.numel():
        raise ValueError(
            f"unknown user ids {bad.unique().tolist()[:10]}: the dataset has "
            f"{num_users} users (ids 0..{num_users - 1})")


@torch.no_grad()
def top_k(model: Recommender, users: Tensor, k: int,
          exclude: Optional[PairIndex] = None,
          batch_size: int = 1024) -> Tuple[Tensor, Tensor]:
    r"""The top-:obj:`k` items of :obj:`users` by :obj:`model.score`,
    scored in batches of :obj:`batch_size` users, with each user's items in
    :obj:`exclude` (*e.g.* :func:`~pyg_mmrec.graphs.train_graph`) scored
    :obj:`-inf`. Returns the items :obj:`[N, k]` (:obj:`-1` in slots
    beyond a user's candidates) and their scores :obj:`[N, k]`.

    Raises:
        ValueError: If :obj:`k` is not in :math:`[1, I]` or a user id is
            out of range.
    """
    if not 1 <= k <= model.num_items:
        raise ValueError(f"k must be between 1 and the number of items "
                         f"({model.num_items}), got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    users = torch.as_tensor(users, dtype=torch.long).flatten()
    check_users(users, model.num_users)
    device = next(itertools.chain(model.parameters(), model.buffers()),
                  torch.empty(0)).device
    users = users.to(device)
    if exclude is not None:  # each user's items: col[ptr[u]:ptr[u + 1]]
        ptr, col = exclude.ptr.to(device), exclude.edge_index[1].to(device)
    items_out, scores_out = [], []
    for start in range(0, users.numel(), batch_size):
        batch = users[start:start + batch_size]
        scores = model.score(batch)
        if not bool(torch.isfinite(scores).all()):
            raise ValueError(
                "the model's scores are not finite (nan or inf): the run "
                "diverged or its checkpoint is damaged; retrain it (e.g. "
                "with a lower --lr) before recommending")
        if exclude is not None:
            row, pos = expand_runs(ptr[batch], ptr[batch + 1] - ptr[batch])
            scores[row, col[pos]] = float('-inf')
        values, items = torch.topk(scores, k, dim=1, sorted=True)
        items.masked_fill_(values == float('-inf'), -1)
        items_out.append(items.cpu())
        scores_out.append(values.cpu())
    if not items_out:
        empty = torch.empty(0, k)
        return empty.long(), empty
    return torch.cat(items_out), torch.cat(scores_out)


def inner_product_top_k(model: Recommender, users: Tensor, k: int,
                        exclude: Optional[PairIndex] = None,
                        batch_size: int = 1024, nlist: Optional[int] = None,
                        nprobe: int = 16) -> Tuple[Tensor, Tensor]:
    r""":func:`top_k` through an approximate inner-product index (faiss's
    inverted file, :obj:`IndexIVFFlat` with inner products, as PyG's
    :obj:`MIPSKNNIndex` uses faiss): the items' embeddings are clustered
    into :obj:`nlist` lists and a user's query
    scans the :obj:`nprobe` nearest lists only, so a query costs about
    :obj:`nprobe / nlist` of an exact ranking (default :obj:`nlist`:
    :math:`\sqrt{I}`, at least 39 items per list); with :obj:`nprobe = nlist`
    it is exact. A user's items in :obj:`exclude` are removed from its
    candidates (the search asks for :math:`k` plus their number). For
    catalogues of millions of items; ``experiments/bench_mips.py`` measures
    its recall against the exact top-:math:`k`.

    Raises:
        ValueError: If faiss is not installed or the model's scores are not
            inner products of its user and item embeddings (MCLN's
            transductive scores, popularity).
    """
    try:
        import faiss
    except ImportError:
        raise ValueError("the inner-product index needs faiss "
                         "(pip install faiss-cpu)") from None
    if type(model).score is not Recommender.score:
        raise ValueError(f"{type(model).__name__}'s scores are not inner "
                         f"products of user and item embeddings: use the "
                         f"exact ranking")
    if not 1 <= k <= model.num_items:
        raise ValueError(f"k must be between 1 and the number of items "
                         f"({model.num_items}), got {k}")
    users = torch.as_tensor(users, dtype=torch.long).flatten()
    check_users(users, model.num_users)
    user_emb, item_emb = (t.detach().float().cpu().contiguous()
                          for t in model.embeddings())
    num_items, dim = item_emb.shape
    # faiss's k-means wants at least 39 items per list.
    nlist = nlist or max(1, min(int(num_items ** 0.5), num_items // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist,
                               faiss.METRIC_INNER_PRODUCT)
    index.train(item_emb.numpy())
    index.add(item_emb.numpy())
    index.nprobe = min(nprobe, nlist)
    items_out, scores_out = [], []
    for block in users.split(batch_size):
        extra = 0
        if exclude is not None:
            extra = int((exclude.ptr[block + 1] - exclude.ptr[block]).max())
        want = min(k + extra, num_items)
        scores, items = (torch.from_numpy(a) for a in index.search(
            user_emb[block].numpy(), want))
        scores = scores.float().masked_fill(items < 0, float('-inf'))
        if exclude is not None:
            seen = exclude.contains(block.view(-1, 1).expand_as(items),
                                    items.clamp(min=0))
            scores = scores.masked_fill(seen, float('-inf'))
        scores, order = scores.topk(k, dim=1)
        items = items.gather(1, order).masked_fill(
            scores == float('-inf'), -1)
        items_out.append(items)
        scores_out.append(scores)
    if not items_out:
        empty = torch.empty(0, k)
        return empty.long(), empty
    return torch.cat(items_out), torch.cat(scores_out)


