r"""Hard negative samplers that any model can use."""
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..graphs.pairs import PairIndex
from ..graphs.sparse import expand_runs


def item_frequency(graph: PairIndex) -> Tensor:
    r"""The training frequency of every item,
    :math:`f_i = |\{u : (u, i) \in \mathcal{E}_{\mathrm{train}}\}| / U`.

    Args:
        graph (PairIndex): The training graph
            (:func:`~pyg_mmrec.graphs.train_graph`).

    Returns:
        torch.Tensor: :obj:`[I]` float frequencies.
    """
    return graph.item_degree().float() / max(graph.num_users, 1)


def column_at_rank(score: Tensor, rank: Tensor, k: int) -> Tensor:
    r"""The column of the entry of rank :obj:`rank[b]` (:obj:`0`: the
    largest) of every row :math:`b` of :obj:`score` :obj:`[B, N]`, for
    ranks below :obj:`k`: :obj:`score.topk(k, dim=1, sorted=True).indices`
    at column :obj:`rank[b]` (an exact tie, whose order :func:`torch.topk`
    leaves open, may give the other column). On the CPU without sorting the
    :math:`k` columns: NumPy's (SIMD) selection of the :math:`k` largest
    values per row (:func:`numpy.partition`), a sort of those values, and
    the first column holding the row's value of rank :obj:`rank[b]`, seven
    times faster than ATen's sorted top-:math:`k` on FMCNS's
    :obj:`[512, 1000]` pools; elsewhere :func:`torch.topk`. For scores
    without :obj:`NaN` (:obj:`-inf` allowed).

    Args:
        score (torch.Tensor): Scores :obj:`[B, N]` (without gradient).
        rank (torch.Tensor): Ranks :obj:`[B]` in :math:`[0, k)`.
        k (int): :math:`1 \le k \le N`.

    Returns:
        torch.Tensor: Columns :obj:`[B]`.
    """
    if score.device.type != 'cpu':
        idx = score.topk(k, dim=1, sorted=True).indices
        return idx.gather(1, rank.view(-1, 1)).view(-1)
    neg = score.neg().numpy()  # ascending order of -score
    top = np.sort(np.partition(neg, k - 1, axis=1)[:, :k], axis=1)
    value = np.take_along_axis(top, rank.view(-1, 1).numpy(), axis=1)
    return torch.from_numpy((neg == value).argmax(axis=1))


class CausalNegativeSampler(torch.nn.Module):
    r"""The causal-aware hard negative sampler of FMCNS, "Flow Matching with
    Causal-aware Negative Sampling" for multimodal recommendation (code:
    `zhaxinji/FMCNS <https://github.com/zhaxinji/FMCNS>`_).

    For a (user :math:`u`, positive :math:`p`) pair, a popularity mask
    mixes a generated embedding :math:`\tilde{\mathbf{x}}_p` (e.g.
    :meth:`~pyg_mmrec.nn.FlowMatchingGenerator.sample`) into the item's
    graph embedding :math:`\mathbf{e}_p`, so that popular positives lean on
    the graph embedding less:

    .. math::
        m_p = \sigma\!\left(-\beta \frac{f_p - \mu_f}{s_f + 10^{-8}}\right),
        \qquad
        \mathbf{a}_p = m_p \tilde{\mathbf{x}}_p + (1 - m_p) \mathbf{e}_p,

    with :math:`f` the items' training frequencies, :math:`\mu_f` their mean
    and :math:`s_f` their standard deviation (unbiased, :func:`torch.std`).
    A pool :math:`\mathcal{C}` of :math:`N_c` items (the head of one random
    permutation of all items, shared by the batch) is scored,
    :math:`S_{pc} = \langle \mathbf{a}_p, \mathbf{e}_c \rangle`, the
    candidates that are training items of :math:`u` get
    :math:`-\infty`, and the negative is drawn uniformly from the
    :math:`k` highest-scoring candidates of the row.

    Guarantees beyond the original: the negative is never a training
    positive of its user. A row with fewer than :math:`k` valid candidates
    draws among the valid ones only; a row with none (a user with
    (nearly) every item) gets an exactly uniform true negative from all
    items (:meth:`~pyg_mmrec.graphs.PairIndex.uniform_negatives`). Training
    positives are looked up through the pool items' users
    (an item-major copy of the sorted training pairs), never a dense
    :math:`U \times I` matrix (the original's costs 3.6 GB on Clothing).
    Validation and test items are not excluded (that would leak them).
    Everything runs without gradient and without a loop over rows.

    On a sampled subgraph (mini-batch training, :meth:`sample_subgraph`)
    the pool is drawn by the same rule (:meth:`pool_positions`) among the
    subgraph's items, whose embeddings the batch holds, instead of all
    items; a subgraph with fewer than :math:`N_c` items is the whole pool,
    with the same top share (:meth:`pool_top_k`), and a subgraph holding
    every item, in any local order, draws exactly the full-graph pool. No
    all-item embedding table is read.

    The module has no parameters; its buffers (a copy of the training
    pairs, their item-major order and the frequencies) follow
    :meth:`~torch.nn.Module.to`
    and are not saved in a :obj:`state_dict`.

    Args:
        graph (PairIndex): The training graph
            (:func:`~pyg_mmrec.graphs.train_graph`).
        freq (torch.Tensor, optional): Item frequencies :math:`f`
            :obj:`[I]`; computed by :func:`item_frequency` when omitted.
            (default: :obj:`None`)
        beta (float, optional): The intervention strength :math:`\beta`.
            (default: :obj:`3.0`)
        num_candidates (int, optional): Pool size :math:`N_c`, capped at
            :math:`I`; :obj:`None` is the original's
            :math:`\min(\lfloor 0.15 I \rfloor, 1000)`. (default: :obj:`1000`)
        top_k (int, optional): The :math:`k` of the top-:math:`k`, capped at
            :math:`N_c`; :obj:`None` is the original's
            :math:`\max(1, \lfloor 0.1 N_c \rfloor)`. (default: :obj:`None`)

    Shapes:
        - **input:** users :math:`(B)`, positives :math:`(B)`, item
          embeddings :math:`(I, d)`, generated embeddings :math:`(I, d)`
        - **output:** negatives :math:`(B)`
    """
    def __init__(self, graph: PairIndex, freq: Optional[Tensor] = None,
                 beta: float = 3.0, num_candidates: Optional[int] = 1000,
                 top_k: Optional[int] = None):
        super().__init__()
        num_items = graph.num_items
        self.num_items = num_items
        self.beta = beta
        if freq is None:
            freq = item_frequency(graph)
        freq = freq.reshape(-1).float()
        if freq.numel() != num_items:
            raise ValueError(f"'freq' must have {num_items} entries (got "
                             f"{freq.numel()})")

        if num_candidates is None:
            num_candidates = min(int(0.15 * num_items), 1000)
        self.num_candidates = max(1, min(num_candidates, num_items))
        if top_k is None:
            top_k = max(1, int(0.1 * self.num_candidates))
        if top_k < 1:
            raise ValueError(f"'top_k' must be positive (got {top_k})")
        self.top_k = min(top_k, self.num_candidates)

        # Owned (it moves with the module): the training pairs, for the
        # user-major lookups and the uniform fallback negatives.
        self.pairs = graph.copy()
        # The same pairs item-major: the users of item i are
        # item_users[item_ptr[i]:item_ptr[i + 1]].
        item_ptr, order = self.pairs.item_csr()
        item_users = self.pairs.edge_index[0, order]
        self.register_buffer('freq', freq, persistent=False)
        # m_p of every item, once (the frequencies are fixed).
        std = freq.std() if freq.numel() > 1 else freq.new_zeros(())
        self.register_buffer('anchor_weight', torch.sigmoid(
            -beta * (freq - freq.mean()) / (std + 1e-8)), persistent=False)
        self.register_buffer('item_users', item_users, persistent=False)
        self.register_buffer('item_ptr', item_ptr, persistent=False)
        self.register_buffer('item_degree', item_ptr[1:] - item_ptr[:-1],
                             persistent=False)

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module (there are none)."""

    def is_positive(self, user: Tensor, item: Tensor) -> Tensor:
        r"""Whether each (broadcast) :obj:`(user, item)` is a training
        interaction."""
        return self.pairs.contains(user, item)

    def pool_positives(self, users: Tensor,
                       cand: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The training pairs among :obj:`users` :obj:`[B]` and the
        candidates :obj:`cand` :obj:`[N_c]`, as (row, candidate) positions
        :obj:`([P], [P])`: candidate :obj:`cand[c]` is a training item of
        :obj:`users[b]` for every returned :obj:`(b, c)`, each once.

        Walks the training users of the pool items, keeps those in the batch
        and finds them among the (sorted) batch users, in
        :math:`O(\sum_{c} \deg(c) + U)` plus the positives found times
        :math:`\log B`: for a random pool, :math:`N_c` times
        the mean item degree, however many positives the batch users
        have."""
        start = self.item_ptr.index_select(0, cand)
        slot, at = expand_runs(start, self.item_degree.index_select(0, cand))
        user = self.item_users.index_select(0, at)  # (slot, user) pairs
        # Those whose user is in the batch, then the batch rows of each.
        in_batch = torch.zeros(self.pairs.num_users, dtype=torch.bool,
                               device=users.device)
        in_batch[users] = True
        hit = in_batch.index_select(0, user).nonzero().view(-1)
        user, slot = user.index_select(0, hit), slot.index_select(0, hit)
        sorted_users, order = torch.sort(users)
        lo = torch.searchsorted(sorted_users, user)
        count = torch.searchsorted(sorted_users, user, right=True) - lo
        pair, at = expand_runs(lo, count)
        return order.index_select(0, at), slot.index_select(0, pair)

    def popularity_mask(self, items: Tensor) -> Tensor:
        r"""The mixing weight :math:`m_p = \sigma(-\beta (f_p - \mu_f) /
        (s_f + 10^{-8}))` of the generated embedding for items :obj:`[B]`:
        below :math:`0.5` for items more frequent than the mean, above it
        for rarer ones, :math:`0.5` at the mean (computed for every item
        once, at construction)."""
        return self.anchor_weight[items]

    def anchor(self, pos_items: Tensor, pos_emb: Tensor,
               pos_generated: Optional[Tensor] = None) -> Tensor:
        r"""The debiased anchors :math:`\mathbf{a}_p = m_p
        \tilde{\mathbf{x}}_p + (1 - m_p) \mathbf{e}_p` :obj:`[B, d]` of
        the positives :obj:`pos_items` :obj:`[B]` from their embeddings
        :obj:`pos_emb` and generated embeddings :obj:`pos_generated`
        (:obj:`[B, d]` each; without generated ones, :math:`\mathbf{e}_p`).
        """
        if pos_generated is None:
            return pos_emb
        m = self.popularity_mask(pos_items).to(pos_emb.dtype).view(-1, 1)
        return m * pos_generated + (1 - m) * pos_emb

    def pool_positions(self, num_available: int,
                       generator: Optional[torch.Generator] = None,
                       device=None) -> Tensor:
        r"""The candidate pool of a batch, as positions among the
        :obj:`num_available` items whose embeddings the batch holds (all
        items on the full graph, a sampled subgraph's items otherwise):
        the head of one uniform random permutation, :math:`N_c` positions
        (all of them, shuffled, when fewer are available). One rule for
        both, so a subgraph holding every item draws the full-graph pool."""
        return torch.randperm(num_available, generator=generator,
                              device=device)[:self.num_candidates]

    def pool_top_k(self, pool_size: int) -> int:
        r"""The :math:`k` for a pool of :obj:`pool_size` candidates:
        :obj:`top_k` for a full pool, the same share of a smaller one
        (at least one)."""
        if pool_size >= self.num_candidates:
            return self.top_k
        return max(1, self.top_k * pool_size // self.num_candidates)

    def rank_pool(self, users: Tensor, anchor: Tensor, pool: Tensor,
                  pool_items: Tensor, pool_emb: Tensor,
                  generator: Optional[torch.Generator] = None
                  ) -> Tuple[Tensor, Tensor]:
        r"""Scores the pool against the anchors,
        :math:`S_{pc} = \langle \mathbf{a}_p, \mathbf{e}_c \rangle`, sets
        the training items of each row's user to :math:`-\infty` and picks
        one of the row's :meth:`pool_top_k` highest uniformly among its
        valid entries.

        Args:
            users (torch.Tensor): User ids :obj:`[B]`.
            anchor (torch.Tensor): Anchors :obj:`[B, d]` (:meth:`anchor`).
            pool (torch.Tensor): What to return for each candidate
                :obj:`[N]` (item ids, or positions in a subgraph).
            pool_items (torch.Tensor): The candidates' item ids :obj:`[N]`.
            pool_emb (torch.Tensor): Their embeddings :obj:`[N, d]`.
            generator (torch.Generator, optional): Random generator.
                (default: :obj:`None`)

        Returns:
            (torch.Tensor, torch.Tensor): The chosen entries of :obj:`pool`
            :obj:`[B]` and the mask :obj:`[B]` of the rows without a valid
            candidate (their entry is a training item: replace it).
        """
        score = anchor @ pool_emb.t()  # [B, N]
        row, col = self.pool_positives(users, pool_items)
        score[row, col] = float('-inf')  # ranks last
        k = self.pool_top_k(pool.numel())
        # The valid entries of a row's top k: its k best, or all its
        # candidates that are not its user's training items.
        num_valid = (pool.numel() - torch.bincount(
            row, minlength=users.numel())).clamp_(max=k)
        # Uniform among them: the largest of i.i.d. uniform keys, with the
        # invalid ranks pushed below all of them; then the column of that
        # rank in the row's descending order.
        key = torch.rand((users.numel(), k), generator=generator,
                         device=score.device)
        key = key.masked_fill(torch.arange(k, device=score.device)
                              >= num_valid.view(-1, 1), -1.0)
        rank = key.argmax(dim=1)
        return pool[column_at_rank(score, rank, k)], num_valid == 0

    @torch.no_grad()
    def sample(self, users: Tensor, pos_items: Tensor, item_emb: Tensor,
               generated_emb: Optional[Tensor] = None,
               generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Draws one causal hard negative per (user, positive) pair, from a
        pool of all items (:meth:`pool_positions`).

        Args:
            users (torch.Tensor): User ids :obj:`[B]`.
            pos_items (torch.Tensor): Their positive items :obj:`[B]`.
            item_emb (torch.Tensor): Item embeddings :math:`\mathbf{e}`
                :obj:`[I, d]` (FMCNS: after the graph convolution).
            generated_emb (torch.Tensor, optional): Generated embeddings
                :math:`\tilde{\mathbf{x}}` :obj:`[I, d]` (FMCNS:
                :obj:`sample_x`); :obj:`None` uses :math:`\mathbf{e}_p` as
                the anchor. (default: :obj:`None`)
            generator (torch.Generator, optional): Random generator on the
                embeddings' device. (default: :obj:`None`)

        Returns:
            torch.Tensor: Negative item ids :obj:`[B]`.
        """
        if item_emb.size(0) != self.num_items:
            raise ValueError(f"'item_emb' must have {self.num_items} rows "
                             f"(got {item_emb.size(0)})")
        device = item_emb.device
        users = users.long().to(device)
        pos_items = pos_items.long().to(device)
        if generated_emb is not None:
            if generated_emb.shape != item_emb.shape:
                raise ValueError(f"'generated_emb' must have the shape of "
                                 f"'item_emb' {tuple(item_emb.shape)} (got "
                                 f"{tuple(generated_emb.shape)})")
            generated_emb = generated_emb[pos_items]
        anchor = self.anchor(pos_items, item_emb[pos_items], generated_emb)

        cand = self.pool_positions(self.num_items, generator, device)
        neg, empty = self.rank_pool(users, anchor, cand, cand,
                                    item_emb[cand], generator)
        if bool(empty.any()):
            neg[empty] = self.pairs.uniform_negatives(users[empty],
                                                      generator)
        return neg

    @torch.no_grad()
    def sample_subgraph(self, users: Tensor, pos_items: Tensor,
                        pos_local: Tensor, item_id: Tensor, item_emb: Tensor,
                        pos_generated: Optional[Tensor] = None, *,
                        fallback: Tensor,
                        generator: Optional[torch.Generator] = None
                        ) -> Tensor:
        r"""Draws one causal hard negative per (user, positive) pair among
        the items of a sampled subgraph, which hold the batch's embeddings:
        the pool is :meth:`pool_positions` of them, taken in id order
        (:math:`N_c` drawn uniformly, or all), ranked as by :meth:`sample`.
        On a subgraph holding every item (in any local order) it draws what
        :meth:`sample` draws.

        Args:
            users (torch.Tensor): User ids :obj:`[B]`.
            pos_items (torch.Tensor): Their positive items :obj:`[B]`.
            pos_local (torch.Tensor): The positives' positions in
                :obj:`item_id` :obj:`[B]`.
            item_id (torch.Tensor): The subgraph's item ids :obj:`[S]`.
            item_emb (torch.Tensor): Their embeddings :obj:`[S, d]`.
            pos_generated (torch.Tensor, optional): The positives' generated
                embeddings :obj:`[B, d]`. (default: :obj:`None`)
            fallback (torch.Tensor): A position per row :obj:`[B]` for the
                rows whose pool holds only training items of their user
                (FMCNS: the batch's own true negative).
            generator (torch.Generator, optional): Random generator.
                (default: :obj:`None`)

        Returns:
            torch.Tensor: Positions in :obj:`item_id` :obj:`[B]`.
        """
        device = item_emb.device
        users = users.long().to(device)
        anchor = self.anchor(pos_items.long().to(device),
                             item_emb[pos_local], pos_generated)
        # Positions in id order: the pool does not depend on the subgraph's
        # local order.
        by_id = torch.argsort(item_id)
        pool = by_id[self.pool_positions(item_id.numel(), generator, device)]
        neg, empty = self.rank_pool(users, anchor, pool, item_id[pool],
                                    item_emb[pool], generator)
        if bool(empty.any()):
            neg[empty] = fallback[empty]
        return neg

    def forward(self, users: Tensor, pos_items: Tensor, item_emb: Tensor,
                generated_emb: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Same as :meth:`sample`."""
        return self.sample(users, pos_items, item_emb, generated_emb,
                           generator)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_items={self.num_items}, '
                f'beta={self.beta}, num_candidates={self.num_candidates}, '
                f'top_k={self.top_k})')
