r"""Full-ranking evaluation over all items (MMRec ``full_sort``), and what
every evaluation protocol shares (:class:`EvaluationProtocol`)."""
from typing import (
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import num_items as _num_items
from ..data.hetero import num_users as _num_users
from ..graphs.pairs import PairIndex, split_graph
from . import distributed
from .metrics import METRICS, check_metrics, key_hits, ranking_metrics

ScoreFn = Callable[[Tensor], Tensor]
EVAL_SPLITS = ('val', 'test')
#: The test masking rules: the splits whose items are masked (never
#: candidates) when a user's test items are ranked.
TEST_MASKS: Dict[str, Tuple[str, ...]] = {
    'train_val': ('train', 'val'),
    'train': ('train', ),
}


class EvaluationProtocol:
    r"""What every evaluation protocol shares: its prepared tensors per split
    (:obj:`_splits`, moved together by :meth:`to`), its metric names and
    evaluated users. A protocol implements :obj:`evaluate(score_fn, split,
    test_mask=None) -> Dict[str, float]` and has a :obj:`protocol`
    description and :obj:`test_masks`.

    It also carries the model selection of a run: the split
    (:obj:`select_on`) and the metric (:obj:`metric`, by default the
    protocol's :obj:`default_metric`) on which the best epoch is chosen
    (see :meth:`select`).

    Example:
        >>> evaluator = build_evaluator(data, protocol='sampled')
        >>> metrics = evaluator.evaluate(model.score, 'val')
        >>> evaluator.metric, 0 <= metrics[evaluator.metric] <= 1
        ('hit@10', True)
    """
    _splits: Dict[str, Dict[str, Tensor]]
    _device: torch.device = torch.device('cpu')
    metrics: Tuple[str, ...]
    ks: Tuple[int, ...]
    #: The selection metric unless :obj:`select` names another.
    default_metric: str
    #: The split the best epoch is selected on, :obj:`"val"` or
    #: :obj:`"test"` (paper reproduction only).
    select_on: str = 'val'
    _metric: Optional[str] = None

    @property
    def metric(self) -> str:
        r"""The selection metric."""
        return self._metric or self.default_metric

    def select(self, select_on: str = 'val',
               metric: Optional[str] = None) -> 'EvaluationProtocol':
        r"""Sets the model selection: the split and the metric (default:
        :obj:`default_metric`); returns the evaluator.

        Raises:
            ValueError: If :obj:`select_on` is not :obj:`"val"` or
                :obj:`"test"`, or :obj:`metric` is not computed.
        """
        if select_on not in ('val', 'test'):
            raise ValueError(f"select_on must be 'val' or 'test', got "
                             f"{select_on!r}")
        self.select_on, self._metric = select_on, metric
        self.check_metric()
        return self

    def check_metric(self) -> None:
        r"""Raises a :class:`ValueError` if the selection metric is not one
        of :obj:`metric_names`."""
        if self.metric not in self.metric_names:
            raise ValueError(f"metric {self.metric!r} is not computed; choose "
                             f"one of {self.metric_names}")

    @property
    def device(self) -> torch.device:
        r"""The device of the prepared tensors and of the users (and
        candidates) passed to :obj:`score_fn`."""
        return self._device

    def to(self, device: Union[str, torch.device]) -> 'EvaluationProtocol':
        r"""Moves the prepared tensors to :obj:`device`. :obj:`evaluate`
        also moves them to the device of the scores it receives."""
        device = torch.device(device)
        if device != self._device:
            self._splits = {
                split: {k: v.to(device)
                        for k, v in store.items()}
                for split, store in self._splits.items()
            }
            self._device = device
        return self

    @property
    def metric_names(self) -> List[str]:
        r"""The keys returned by :obj:`evaluate`, *e.g.*,
        :obj:`"recall@20"`."""
        return [f'{m}@{k}' for m in self.metrics for k in self.ks]

    def users(self, split: str = 'val') -> Tensor:
        r"""The evaluated users of :obj:`split`, sorted."""
        return self._store(split)['users']

    def _follow(self, score_fn: Callable) -> None:
        # Moves to the device of the module whose method `score_fn` is.
        device = _module_device(score_fn)
        if device is not None:
            self.to(device)

    def _average(self, batches: Iterable[Dict[str, Tensor]],
                 count: int) -> Dict[str, float]:
        r"""The mean of every metric over the :obj:`count` evaluated rows,
        from the per-batch sums :obj:`batches` (summed over the processes
        first under :mod:`torch.distributed`; zeros without rows)."""
        names = self.metric_names
        total: Optional[Tensor] = None
        for out in batches:
            batch = torch.stack([out[name] for name in names])
            total = batch if total is None else total + batch
        if distributed.world_size() > 1:
            if total is None:
                total = torch.zeros(len(names), dtype=torch.float64,
                                    device=self._device)
            packed = torch.cat([total, total.new_tensor([float(count)])])
            distributed.all_reduce_sum(packed)
            total, count = packed[:-1], int(packed[-1].item())
        if total is None or count == 0:
            return {name: 0.0 for name in names}
        return dict(zip(names, (total / count).tolist()))


class Evaluator(EvaluationProtocol):
    r"""Full-ranking evaluator: scores every item for each evaluated user,
    masks the user's known interactions, takes the top-:math:`\max(K)` items
    and averages Recall, NDCG, Precision, MAP and Hit at every :math:`K` over
    the users (see :mod:`pyg_mmrec.train.metrics` for the definitions).

    The evaluated users of a split are the users with at least one interaction
    in it. Masked items (score set to :obj:`-inf` before ranking):

    * :obj:`split="val"`: the user's training items. Test items are not
      masked (they are unknown at validation time).
    * :obj:`split="test"`: by default (:obj:`test_mask="train_val"`) the
      user's training **and validation** items: the validation items are
      known interactions, not candidates. :obj:`test_mask="train"` masks the
      training items only, the rule of MMRec's and DiffMM's test pass, so
      that a held-out validation item may take a top-:math:`K` slot; use it
      to compare with numbers from those frameworks.

    Items scored :obj:`-inf` are never recommended: when a user has fewer
    candidates than :math:`K`, the list is padded with empty slots (id
    :obj:`-1`). :math:`K` is clamped to the number of items.

    Under :mod:`torch.distributed`, :meth:`evaluate` scores a contiguous
    shard of the evaluated users per process (see
    :func:`~pyg_mmrec.train.distributed.shard`) and all-reduces the metric
    sums and the user counts, so that every process returns the metrics of
    a single process; :meth:`topk` is not sharded.

    All index structures are precomputed once per split, so
    :meth:`evaluate` only batches, scores, masks and ranks. The score tensor
    returned by :obj:`score_fn` is masked in place.

    Args:
        data (HeteroData): The dataset (see :mod:`pyg_mmrec.data.hetero`).
        ks (Sequence[int]): Cut-offs. (default: :obj:`(5, 10, 20, 50)`)
        batch_size (int): Users scored at a time. (default: :obj:`4096`)
        metrics (Sequence[str]): Subset of :obj:`("recall", "ndcg",
            "precision", "map", "hit")`. (default: all)
        test_masks (Sequence[str]): The test masking rules to prepare, among
            :obj:`"train_val"` and :obj:`"train"` (see above); the first is
            the default of :meth:`evaluate`. (default: :obj:`("train_val",)`)
    """
    default_metric = 'recall@20'

    def __init__(
        self,
        data: HeteroData,
        ks: Sequence[int] = (5, 10, 20, 50),
        batch_size: int = 4096,
        metrics: Sequence[str] = METRICS,
        test_masks: Sequence[str] = ('train_val', ),
    ) -> None:
        check_metrics(ks, metrics)
        #: A description of the protocol.
        self.protocol = 'full ranking'
        self.test_masks = check_test_masks(test_masks)
        if int(batch_size) <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.ks = tuple(int(k) for k in ks)
        self.metrics = tuple(metrics)
        self.batch_size = int(batch_size)
        self.num_users = _num_users(data)
        self.num_items = _num_items(data)
        if self.num_items <= 0:
            raise ValueError("the dataset has no items")
        #: Length of the ranked lists, :math:`\min(\max(K), I)`.
        self.max_k = min(max(self.ks), self.num_items)

        # The splits' sorted pair indices (the training one is the shared
        # train_graph): pairs sorted by user, then item.
        graphs = {s: split_graph(data, s, 'cpu') for s in
                  ('train', 'val', 'test')}
        self._device = torch.device('cpu')
        # One store per (split, masking rule): validation masks the
        # training items; test masks per rule.
        rules = [('val', ('train', ))] + [
            (f'test:{mask}', TEST_MASKS[mask]) for mask in self.test_masks]
        self._splits: Dict[str, Dict[str, Tensor]] = {}
        for key, masked in rules:
            split = key.split(':')[0]
            mask = (graphs[masked[0]] if len(masked) == 1 else PairIndex(
                torch.cat([graphs[s].edge_index for s in masked], dim=1),
                self.num_users, self.num_items))
            self._splits[key] = self._prepare(graphs[split].edge_index,
                                              mask.edge_index)

    def _prepare(self, gt_index: Tensor,
                 mask_index: Tensor) -> Dict[str, Tensor]:
        # Both indices are sorted by user, then item (PairIndex order), so
        # the keys below come out sorted.
        U, I = self.num_users, self.num_items  # noqa: E741
        users, gt_count = torch.unique_consecutive(gt_index[0],
                                                   return_counts=True)
        pos = torch.full((U, ), -1, dtype=torch.long)
        pos[users] = torch.arange(users.numel())
        # Ground truth as sorted keys `position * I + item`:
        gt_key = pos[gt_index[0]] * I + gt_index[1]
        gt_ptr = torch.cat([gt_count.new_zeros(1), gt_count.cumsum(0)])
        # Items to mask, grouped by position (CSR over evaluated users):
        row = pos[mask_index[0]]
        keep = row >= 0
        row, col = row[keep], mask_index[1][keep]
        mask_ptr = torch.cat([
            row.new_zeros(1),
            torch.bincount(row, minlength=users.numel()).cumsum(0)
        ])
        return dict(users=users, gt_count=gt_count, gt_key=gt_key,
                    gt_ptr=gt_ptr, mask_row=row, mask_col=col,
                    mask_ptr=mask_ptr)

    def _store(self, split: str,
               test_mask: Optional[str] = None) -> Dict[str, Tensor]:
        if split not in EVAL_SPLITS:
            raise ValueError(f"split must be one of {EVAL_SPLITS}, got "
                             f"{split!r}")
        if split == 'val':
            return self._splits['val']
        mask = self.test_masks[0] if test_mask is None else test_mask
        if mask not in self.test_masks:
            raise ValueError(f"test_mask {mask!r} was not prepared; this "
                             f"evaluator has test_masks={self.test_masks}")
        return self._splits[f'test:{mask}']

    def _ranked(self, score_fn: ScoreFn, split: str, k: int,
                test_mask: Optional[str] = None,
                part: Optional[slice] = None
                ) -> Iterator[Tuple[int, int, Tensor]]:
        r"""Yields :obj:`(start, end, topk_items)` per batch of the evaluated
        users :obj:`part` (positions among the split's users; default:
        all)."""
        num_eval = self._store(split, test_mask)['users'].numel()
        if part is None:
            part = slice(0, num_eval)
        k = min(k, self.num_items)
        for start in range(part.start, part.stop, self.batch_size):
            end = min(start + self.batch_size, part.stop)
            store = self._store(split, test_mask)
            scores = score_fn(store['users'][start:end])
            if scores.shape != (end - start, self.num_items):
                raise ValueError(
                    f"score_fn must return a [{end - start}, "
                    f"{self.num_items}] tensor, got {tuple(scores.shape)}")
            if scores.device != self._device:
                store = self.to(scores.device)._store(split, test_mask)
            lo, hi = store['mask_ptr'][[start, end]].tolist()
            scores[store['mask_row'][lo:hi] - start,
                   store['mask_col'][lo:hi]] = float('-inf')
            values, topk_items = torch.topk(scores, k, dim=1, sorted=True)
            topk_items.masked_fill_(values == float('-inf'), -1)
            yield start, end, topk_items

    @torch.no_grad()
    def topk(self, score_fn: ScoreFn, split: str = 'val',
             k: Optional[int] = None,
             test_mask: Optional[str] = None) -> Tuple[Tensor, Tensor]:
        r"""Ranks the items of every evaluated user of :obj:`split`.

        Args:
            score_fn (callable): Maps users :obj:`[B]` to scores
                :obj:`[B, num_items]`.
            split (str): :obj:`"val"` or :obj:`"test"`. (default: :obj:`"val"`)
            k (int, optional): List length, clamped to the number of items.
                (default: :obj:`max(ks)`)
            test_mask (str, optional): The test masking rule, one of
                :obj:`test_masks`. (default: the first)

        Returns:
            The users :obj:`[N]` and their ranked items :obj:`[N, k]`
            (:obj:`-1` for empty slots).
        """
        k = self.max_k if k is None else int(k)
        self._follow(score_fn)
        out = [items for _, _, items in
               self._ranked(score_fn, split, k, test_mask)]
        users = self.users(split)
        if not out:
            return users, torch.empty(0, min(k, self.num_items),
                                      dtype=torch.long, device=users.device)
        return users, torch.cat(out, dim=0)

    @torch.no_grad()
    def evaluate(self, score_fn: ScoreFn, split: str = 'val',
                 test_mask: Optional[str] = None) -> Dict[str, float]:
        r"""Evaluates :obj:`score_fn` on :obj:`split`.

        Args:
            score_fn (callable): Maps users :obj:`[B]` (on :obj:`device`) to
                scores :obj:`[B, num_items]`, *e.g.*, a model's :obj:`score`.
                If it is a method of a :class:`torch.nn.Module`, the
                evaluator first moves to the module's device.
            split (str): :obj:`"val"` or :obj:`"test"`. (default: :obj:`"val"`)
            test_mask (str, optional): The test masking rule, one of
                :obj:`test_masks`. (default: the first)

        Returns:
            A dictionary mapping :obj:`"<metric>@<k>"` (*e.g.*,
            :obj:`"recall@20"`) to the average over the evaluated users.
        """
        self._follow(score_fn)
        num_eval = self._store(split, test_mask)['users'].numel()
        part = distributed.shard(num_eval)

        def batches():
            for start, end, topk_items in self._ranked(
                    score_fn, split, self.max_k, test_mask, part):
                store = self._store(split, test_mask)
                glo, ghi = store['gt_ptr'][[start, end]].tolist()
                hits = key_hits(topk_items, store['gt_key'][glo:ghi],
                                self.num_items, offset=start)
                yield ranking_metrics(hits, store['gt_count'][start:end],
                                      self.ks, self.metrics, reduce='sum')

        return self._average(batches(), part.stop - part.start)

    def evaluate_embeddings(self, user_emb: Tensor, item_emb: Tensor,
                            split: str = 'val',
                            test_mask: Optional[str] = None
                            ) -> Dict[str, float]:
        r"""Evaluates dot-product scores :obj:`user_emb[u] @ item_emb.T`.

        Args:
            user_emb (torch.Tensor): User embeddings :obj:`[num_users, d]`.
            item_emb (torch.Tensor): Item embeddings :obj:`[num_items, d]`.
            split (str): :obj:`"val"` or :obj:`"test"`. (default: :obj:`"val"`)
            test_mask (str, optional): The test masking rule. (default: the
                first of :obj:`test_masks`)
        """
        self.to(user_emb.device)
        dtype = torch.result_type(user_emb, item_emb)
        item_t = item_emb.detach().to(dtype).t()
        size = min(self.batch_size,
                   self._store(split, test_mask)['users'].numel())
        buf: Dict[str, Tensor] = {}

        def score_fn(users: Tensor) -> Tensor:
            # One output buffer for all batches: avoids a fresh allocation
            # (and its page faults) per batch.
            if 'out' not in buf:
                buf['out'] = item_t.new_empty((size, self.num_items))
            return torch.mm(user_emb[users].to(dtype), item_t,
                            out=buf['out'][:users.numel()])

        return self.evaluate(score_fn, split, test_mask)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(ks={self.ks}, '
                f'metrics={self.metrics}, batch_size={self.batch_size}, '
                f'test_masks={self.test_masks})')


def check_test_masks(test_masks: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    r"""Validates test masking rules (a name, a comma-separated string of
    names or a sequence of names) and returns them as a tuple."""
    if isinstance(test_masks, str):
        test_masks = [m.strip() for m in test_masks.split(',')]
    masks = tuple(test_masks)
    unknown = [m for m in masks if m not in TEST_MASKS]
    if not masks or unknown or len(set(masks)) != len(masks):
        raise ValueError(f"test_masks must be distinct names among "
                         f"{tuple(TEST_MASKS)}, got {masks!r}")
    return masks


def _module_device(score_fn: ScoreFn) -> Optional[torch.device]:
    r"""The device of the module whose method :obj:`score_fn` is, if any."""
    module = getattr(score_fn, '__self__', None)
    if isinstance(module, torch.nn.Module):
        for tensor in module.parameters():
            return tensor.device
        for tensor in module.buffers():
            return tensor.device
    return None
