r"""Sampled leave-one-out evaluation (NCF/MCLN style): each held-out item is
ranked against a fixed set of sampled negatives instead of all items."""
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import num_items as _num_items
from ..data.hetero import num_users as _num_users
from ..graphs.pairs import PairIndex, interaction_graph, split_graph
from . import distributed
from .evaluator import EVAL_SPLITS, EvaluationProtocol
from .metrics import check_metrics, ranking_metrics

#: :obj:`score_fn(users [B], items [B, C]) -> scores [B, C]`.
PairScoreFn = Callable[[Tensor, Tensor], Tensor]
#: The metrics of the sampled protocol (with one relevant item per case,
#: Recall@K equals Hit@K).
SAMPLED_METRICS = ('hit', 'ndcg', 'recall')


class SampledEvaluator(EvaluationProtocol):
    r"""Sampled leave-one-out evaluator: every held-out (user, item) pair of
    a split is one *case*, ranked among :math:`1 + N` candidates, the
    held-out item and :math:`N` (:obj:`num_negatives`) sampled negatives.

    * **Cases.** Every (user, item) pair of the split is its own case: a
      user with several validation (or test) items is evaluated once per
      item, each against its own negatives (as NCF-style leave-one-out does
      when the split holds more than one item), and the metrics are averaged
      over the cases, not the users.
    * **Negatives.** :math:`N` distinct items per case, uniform among the
      items that are *not* any of the user's training, validation or test
      items. They are drawn **once**, at construction, from a
      :class:`torch.Generator` seeded by :obj:`seed` (validation, then test),
      so that every evaluation and every model sees the same candidates.
    * **Rank.** With :math:`s_0` the held-out item's score and
      :math:`s_1, \ldots, s_N` the negatives',

      .. math::
          r = |\{j \ge 1 : s_j \not< s_0\}|
            = |\{j : s_j > s_0\}| + |\{j : s_j = s_0\}|,

      *i.e.*, ties are **pessimistic**: a constant scorer gets
      :math:`r = N` and a Hit of :obj:`0` (a NaN score on either side also
      counts against the held-out item).
    * **Metrics.** :math:`\mathrm{HR@}K = 1[r < K]` and
      :math:`\mathrm{NDCG@}K = 1[r < K] / \log_2(r + 2)`, averaged over the
      cases, computed by :func:`~pyg_mmrec.train.metrics.ranking_metrics`
      on the one-hot hit row of :math:`r` with one relevant item (so
      :obj:`"recall"` equals :obj:`"hit"`); :math:`K` is clamped to
      :math:`1 + N`.

    :obj:`score_fn(users, items)` gets the users :obj:`[B]` and their
    candidates :obj:`[B, 1 + N]` (column :obj:`0` is the held-out item) and
    returns their scores :obj:`[B, 1 + N]`, *e.g.*, a model's
    :obj:`score(users, items)`. The protocol only passes the candidate
    matrix: whether a candidate's score depends on the other candidates is
    the model's choice (with MCLN's original transductive scoring, its
    counterfactual attention runs across the :math:`1 + N` candidates of a
    case).

    Under :mod:`torch.distributed` each process scores a contiguous shard
    of the cases (see :func:`~pyg_mmrec.train.distributed.shard`) and the
    metric sums and counts are all-reduced, so that every process returns
    the metrics of a single process.

    Args:
        data (HeteroData): The dataset (see :mod:`pyg_mmrec.data.hetero`).
        ks (Sequence[int]): Cut-offs. (default: :obj:`(5, 10, 20)`)
        batch_size (int): Cases scored at a time. (default: :obj:`4096`)
        num_negatives (int): Negatives per case :math:`N`.
            (default: :obj:`99`)
        seed (int): Seed of the negatives. (default: :obj:`0`)
        metrics (Sequence[str]): Subset of :obj:`("hit", "ndcg", "recall")`.
            (default: :obj:`("hit", "ndcg")`)

    Raises:
        ValueError: If a user of a split has fewer than :obj:`num_negatives`
            items outside their interactions.
    """
    #: The test masking rules, for interface compatibility with
    #: :class:`~pyg_mmrec.train.Evaluator`: every interaction of the user
    #: (train, validation and test) is excluded from the negatives.
    test_masks: Tuple[str, ...] = ('train_val', )
    default_metric = 'hit@10'

    def __init__(
        self,
        data: HeteroData,
        ks: Sequence[int] = (5, 10, 20),
        batch_size: int = 4096,
        num_negatives: int = 99,
        seed: int = 0,
        metrics: Sequence[str] = ('hit', 'ndcg'),
    ) -> None:
        check_metrics(ks, ['hit'])
        bad = [m for m in metrics if m not in SAMPLED_METRICS]
        if bad or len(metrics) == 0:
            raise ValueError(f"metrics must be a non-empty subset of "
                             f"{SAMPLED_METRICS} for the sampled protocol, "
                             f"got {tuple(metrics)}")
        if int(batch_size) <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if int(num_negatives) <= 0:
            raise ValueError(f"num_negatives must be positive, got "
                             f"{num_negatives}")
        self.ks = tuple(int(k) for k in ks)
        self.metrics = tuple(metrics)
        self.batch_size = int(batch_size)
        self.num_negatives = int(num_negatives)
        self.seed = int(seed)
        self.num_users = _num_users(data)
        self.num_items = _num_items(data)
        #: Length of the ranked candidate lists, :math:`\min(\max(K), 1+N)`.
        self.max_k = min(max(self.ks), 1 + self.num_negatives)
        #: A description of the protocol.
        self.protocol = (f'sampled: 1 held-out + {self.num_negatives} '
                         f'negatives')

        index = interaction_graph(data, 'cpu')
        generator = torch.Generator().manual_seed(self.seed)
        self._device = torch.device('cpu')
        self._splits: Dict[str, Dict[str, Tensor]] = {}
        for split in EVAL_SPLITS:
            users, items = split_graph(data, split, 'cpu').edge_index
            neg = sample_negatives(index, users, self.num_negatives,
                                   generator, split)
            self._splits[split] = dict(
                cases=users, users=users.unique(sorted=True),
                candidates=torch.cat([items.view(-1, 1), neg], dim=1))

    def candidates(self, split: str = 'val') -> Tuple[Tensor, Tensor]:
        r"""The cases of :obj:`split`: their users :obj:`[C]` and candidates
        :obj:`[C, 1 + N]` (column :obj:`0`: the held-out item), sorted by
        user then held-out item."""
        store = self._store(split)
        return store['cases'], store['candidates']

    def _store(self, split: str,
               test_mask: Optional[str] = None) -> Dict[str, Tensor]:
        if split not in EVAL_SPLITS:
            raise ValueError(f"split must be one of {EVAL_SPLITS}, got "
                             f"{split!r}")
        if test_mask is not None and test_mask not in self.test_masks:
            raise ValueError(
                f"test_mask {test_mask!r} does not apply to the sampled "
                f"protocol (its negatives exclude all of the user's "
                f"interactions); use None or {self.test_masks[0]!r}")
        return self._splits[split]

    def _ranks(self, score_fn: PairScoreFn, split: str, start: int,
               end: int) -> Tensor:
        store = self._store(split)
        users = store['cases'][start:end]
        items = store['candidates'][start:end]
        scores = score_fn(users, items)
        if scores.shape != items.shape:
            raise ValueError(f"score_fn must return a {list(items.shape)} "
                             f"tensor (scores of the candidates), got "
                             f"{list(scores.shape)}")
        # Pessimistic ties: every negative not strictly below counts.
        return (~(scores[:, 1:] < scores[:, :1])).sum(dim=1)

    @torch.no_grad()
    def ranks(self, score_fn: PairScoreFn, split: str = 'val') -> Tensor:
        r"""The rank :math:`r \in \{0, \ldots, N\}` of the held-out item of
        every case of :obj:`split` :obj:`[C]` (all cases, not sharded)."""
        self._follow(score_fn)
        num_cases = self._store(split)['cases'].numel()
        out = [self._ranks(score_fn, split, start,
                           min(start + self.batch_size, num_cases))
               for start in range(0, num_cases, self.batch_size)]
        if not out:
            return torch.empty(0, dtype=torch.long, device=self._device)
        return torch.cat(out)

    @torch.no_grad()
    def evaluate(self, score_fn: PairScoreFn, split: str = 'val',
                 test_mask: Optional[str] = None) -> Dict[str, float]:
        r"""Evaluates :obj:`score_fn` on :obj:`split`.

        Args:
            score_fn (callable): Maps users :obj:`[B]` and their candidates
                :obj:`[B, 1 + N]` (on :obj:`device`) to scores
                :obj:`[B, 1 + N]`, *e.g.*, a model's :obj:`score`. If it is a
                method of a :class:`torch.nn.Module`, the evaluator first
                moves to the module's device.
            split (str): :obj:`"val"` or :obj:`"test"`. (default: :obj:`"val"`)
            test_mask (str, optional): Only :obj:`None` or
                :obj:`"train_val"` (for interface compatibility).

        Returns:
            A dictionary mapping :obj:`"<metric>@<k>"` (*e.g.*,
            :obj:`"hit@10"`) to the average over the cases.
        """
        self._follow(score_fn)
        num_cases = self._store(split, test_mask)['cases'].numel()
        part = distributed.shard(num_cases)

        def batches():
            for start in range(part.start, part.stop, self.batch_size):
                end = min(start + self.batch_size, part.stop)
                rank = self._ranks(score_fn, split, start, end)
                hits = (torch.arange(self.max_k, device=rank.device) ==
                        rank.view(-1, 1))
                yield ranking_metrics(hits, torch.ones_like(rank), self.ks,
                                      self.metrics, reduce='sum')

        return self._average(batches(), part.stop - part.start)

    def evaluate_embeddings(self, user_emb: Tensor, item_emb: Tensor,
                            split: str = 'val',
                            test_mask: Optional[str] = None
                            ) -> Dict[str, float]:
        r"""Evaluates dot-product scores
        :math:`\langle \mathbf{e}_u, \mathbf{e}_i \rangle` of the candidates.

        Args:
            user_emb (torch.Tensor): User embeddings :obj:`[num_users, d]`.
            item_emb (torch.Tensor): Item embeddings :obj:`[num_items, d]`.
            split (str): :obj:`"val"` or :obj:`"test"`. (default: :obj:`"val"`)
            test_mask (str, optional): Only :obj:`None` or
                :obj:`"train_val"`.
        """
        self.to(user_emb.device)
        dtype = torch.result_type(user_emb, item_emb)
        user_emb, item_emb = user_emb.detach(), item_emb.detach()

        def score_fn(users: Tensor, items: Tensor) -> Tensor:
            return torch.einsum('bd,bcd->bc', user_emb[users].to(dtype),
                                item_emb[items].to(dtype))

        return self.evaluate(score_fn, split, test_mask)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(ks={self.ks}, '
                f'metrics={self.metrics}, batch_size={self.batch_size}, '
                f'num_negatives={self.num_negatives}, seed={self.seed})')


def sample_negatives(index: PairIndex, users: Tensor, num_negatives: int,
                     generator: Optional[torch.Generator] = None,
                     split: str = 'the split') -> Tensor:
    r"""Draws :obj:`num_negatives` *distinct* items per entry of
    :obj:`users` :obj:`[C]`, uniform among the items not paired with the
    user in :obj:`index`, as a :obj:`[C, num_negatives]` matrix.

    Every entry is drawn by :meth:`PairIndex.uniform_negatives`; the
    repeated items of a row (all but the first occurrence) are redrawn, all
    rows at once, until the rows are distinct. The procedure commutes with
    every permutation of a user's candidate items, so each row is a uniform
    subset of them.

    Raises:
        ValueError: If a user has fewer than :obj:`num_negatives` candidates.
    """
    users = users.long().to(index.device)
    C, N = users.numel(), int(num_negatives)
    free = index.num_items - index.user_degree()[users]
    if bool((free < N).any()):
        bad = users[free < N].unique()
        fewest = int(free[free < N].min())
        raise ValueError(
            f"num_negatives={N} but {bad.numel()} user(s) of {split} (e.g. "
            f"{bad[:5].tolist()}) have only {fewest} candidate item(s) (items "
            f"outside their train/val/test interactions); lower "
            f"num_negatives")
    neg = index.uniform_negatives(users.repeat_interleave(N),
                                  generator).view(C, N)
    active = torch.arange(C, device=neg.device)
    while active.numel() > 0:
        sub = neg[active]
        value, perm = sub.sort(dim=1, stable=True)
        repeat = torch.zeros_like(value, dtype=torch.bool)
        repeat[:, 1:] = value[:, 1:] == value[:, :-1]
        # Back to the original columns; the first occurrence is kept.
        repeat = torch.zeros_like(repeat).scatter_(1, perm, repeat)
        has = repeat.any(dim=1)
        active, repeat = active[has], repeat[has]
        row, col = repeat.nonzero(as_tuple=True)
        neg[active[row], col] = index.uniform_negatives(users[active[row]],
                                                        generator)
    return neg


__all__ = ['SampledEvaluator', 'sample_negatives', 'SAMPLED_METRICS']
