r"""Batch sources: what the trainer iterates over in an epoch."""
from typing import Iterator, List, Optional, Protocol, Tuple, runtime_checkable

import torch
from torch import Tensor

from ..graphs.pairs import PairIndex
from .batch import BPRBatch


@runtime_checkable
class BatchSource(Protocol):
    r"""Anything the trainer can draw an epoch of batches from.

    :meth:`batches` must take all of its randomness from :obj:`generator`
    (the trainer seeds one per epoch, stage and process), so that an epoch
    is reproducible and a resumed run draws what an uninterrupted one
    would.

    Example:
        >>> source = TripletSource(train_graph(data), batch_size=2048)
        >>> gen = torch.Generator().manual_seed(0)
        >>> for batch in source.batches(epoch=1, generator=gen):
        ...     terms = model(batch)
    """
    def __len__(self) -> int:
        r"""The number of batches per epoch."""

    def batches(self, epoch: int,
                generator: torch.Generator) -> Iterator[object]:
        r"""One epoch of batches."""


def init_sharded(source, graph: PairIndex, batch_size: int, shard: tuple,
                  exclude: Optional[PairIndex]) -> None:
    r"""Checks and sets the shared state of the pair-drawing sources:
    :obj:`graph` (on the CPU, where batches are drawn), :obj:`batch_size`,
    :obj:`rank` / :obj:`world_size` and the pairs negatives avoid."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rank, world = shard
    if not 0 <= rank < world:
        raise ValueError(f"shard must be (rank, world_size) with "
                         f"0 <= rank < world_size, got {shard}")
    if graph.device.type != 'cpu':
        graph = graph.copy().cpu()
    source.graph, source.batch_size = graph, int(batch_size)
    source.rank, source.world_size = int(rank), int(world)
    source.exclude = graph if exclude is None else exclude


def shard_slices(num: int, batch_size: int, rank: int = 0,
                 world_size: int = 1) -> List[slice]:
    r"""The batches of one process among :obj:`world_size` over positions
    :math:`0, \dots, N - 1` of a shared order, :math:`W` batches of
    :obj:`batch_size` :math:`B` per round: in round :math:`k` rank
    :math:`r` takes :math:`[kWB + rB, kWB + (r + 1)B)`, so that the round
    is the :math:`k`-th batch of :math:`WB` of one process. The last,
    incomplete round is split into :math:`W` near-equal parts
    (:func:`~pyg_mmrec.train.distributed.shard`'s rule); with fewer than
    :math:`W` positions left it is dropped (every process must take the
    same number of steps). With one process: consecutive batches of
    :math:`B`, the last one smaller.

    Example:
        >>> shard_slices(10, 2, rank=1, world_size=2)
        [slice(2, 4, None), slice(6, 8, None), slice(9, 10, None)]
    """
    size = batch_size * world_size
    rounds, rest = divmod(num, size)
    out = [slice(k * size + rank * batch_size,
                 k * size + (rank + 1) * batch_size) for k in range(rounds)]
    if rest >= world_size:
        lo = rounds * size
        out.append(slice(lo + rest * rank // world_size,
                         lo + rest * (rank + 1) // world_size))
    return out


class TripletSource:
    r"""Full-graph BPR triples: every training pair once per epoch, in a
    shuffled order, each with a fresh uniform true negative
    (:meth:`~pyg_mmrec.graphs.PairIndex.uniform_negatives`: never a
    training item of its user; validation and test items are not excluded,
    which would leak them).

    Args:
        graph (PairIndex): The training graph.
        batch_size (int): Triples per batch (the last may be smaller).
        shard (tuple, optional): :obj:`(rank, world_size)`: this process
            takes its batches of the shared shuffled order by
            :func:`shard_slices` (with the same generator in every process,
            :math:`W` processes at batch size :math:`B` draw the batches of
            one process at :math:`WB`). (default: :obj:`(0, 1)`)
        exclude (PairIndex, optional): The pairs negatives avoid, if not
            :obj:`graph` (e.g. every interaction, to reproduce an original
            that leaks the held-out items this way). (default: :obj:`None`)
        negatives (bool): Draw the negatives; :obj:`False` gives (user,
            positive) pairs (:obj:`neg` is :obj:`None`) for a negative-free
            recipe. (default: :obj:`True`)
    """
    def __init__(self, graph: PairIndex, batch_size: int,
                 shard: tuple = (0, 1), exclude: Optional[PairIndex] = None,
                 negatives: bool = True):
        init_sharded(self, graph, batch_size, shard, exclude)
        self.negatives = negatives

    def slices(self) -> List[slice]:
        r"""This process's batches as slices of the epoch's order."""
        return shard_slices(self.graph.num_pairs, self.batch_size,
                            self.rank, self.world_size)

    def __len__(self) -> int:
        return len(self.slices())

    def batches(self, epoch: int,
                generator: Optional[torch.Generator] = None
                ) -> Iterator[BPRBatch]:
        num_pairs = self.graph.num_pairs
        perm = torch.randperm(num_pairs, generator=generator)
        user, pos = self.graph.edge_index[:, perm]
        if not self.negatives:
            for sl in self.slices():
                yield BPRBatch(user[sl], pos[sl], None)
            return
        neg = self.exclude.uniform_negatives(user, generator)
        for sl in self.slices():
            yield BPRBatch(user[sl], pos[sl], neg[sl])

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(pairs={self.graph.num_pairs}, '
                f'batch_size={self.batch_size})')


def distinct_draw(n: int, k: int,
                  generator: Optional[torch.Generator] = None) -> Tensor:
    r""":obj:`k` distinct values of :obj:`range(n)`, uniformly, in a uniformly
    random order: the first :obj:`k` of a random permutation when
    :math:`16k > n`, else in :math:`O(k)` by drawing with replacement and
    keeping first occurrences (the same distribution: the distinct values
    of independent uniform draws, in order of first appearance, are a
    uniform ordered sample without replacement), so that a batch of a
    million-row table does not cost a permutation of it."""
    if 16 * k > n:
        return torch.randperm(n, generator=generator)[:k]
    out = torch.empty(0, dtype=torch.long)
    while out.numel() < k:
        cand = torch.cat([out, torch.randint(n, (2 * (k - out.numel()), ),
                                             generator=generator)])
        uniq, inverse = torch.unique(cand, return_inverse=True)
        first = torch.full((uniq.numel(), ), cand.numel()).scatter_reduce_(
            0, inverse, torch.arange(cand.numel()), 'amin')
        out = cand[first.sort().values][:k]
    return out


class DistinctUserSource:
    r"""MCLN's batches (``models.md`` 6.2): each step draws
    :obj:`batch_size` **distinct** users among those with training items,
    and for each one training positive (uniform over the user's items), one
    uniform true negative and, independently, one uniform "intervention"
    item that is not a training item of the user either (both from
    :meth:`~pyg_mmrec.graphs.PairIndex.uniform_negatives`). An epoch has
    :math:`\lfloor |\mathcal{E}_{train}| / B \rfloor + 1` steps, as the
    original; users are drawn afresh at every step, so an epoch need not
    visit every pair. With fewer eligible users than :obj:`batch_size`
    (the original then fails), a batch holds every eligible user.

    Args:
        graph (PairIndex): The training graph.
        batch_size (int): Users per batch :math:`B`.
        shard (tuple, optional): :obj:`(rank, world_size)`: every process
            draws the steps of all (the same with the same generator) and
            takes every :obj:`world_size`-th, from :obj:`rank` on; the
            steps are rounded up to a multiple of :obj:`world_size`, so
            that every process takes as many. (default: :obj:`(0, 1)`)
        exclude (PairIndex, optional): The pairs negatives and intervention
            items avoid, if not :obj:`graph`. (default: :obj:`None`)
    """
    def __init__(self, graph: PairIndex, batch_size: int,
                 shard: tuple = (0, 1), exclude: Optional[PairIndex] = None):
        init_sharded(self, graph, batch_size, shard, exclude)
        self.users = (self.graph.user_degree() > 0).nonzero().view(-1)
        if self.users.numel() == 0:
            raise ValueError("the training graph has no interactions")

    def __len__(self) -> int:
        steps = self.graph.num_pairs // self.batch_size + 1
        return -(-steps // self.world_size)

    def batches(self, epoch: int,
                generator: Optional[torch.Generator] = None
                ) -> Iterator[BPRBatch]:
        graph, size = self.graph, min(self.batch_size, self.users.numel())
        degree = graph.user_degree()
        for step in range(len(self) * self.world_size):
            pick = distinct_draw(self.users.numel(), size, generator)
            user = self.users[pick]
            offset = (torch.rand(size, generator=generator) *
                      degree[user]).long().clamp_(max=degree[user] - 1)
            pos = graph.edge_index[1, graph.ptr[user] + offset]
            neg = self.exclude.uniform_negatives(user, generator)
            intervention = self.exclude.uniform_negatives(user, generator)
            if step % self.world_size == self.rank:
                yield BPRBatch(user, pos, neg, intervention=intervention)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(users={self.users.numel()}, '
                f'batch_size={self.batch_size})')


class RowBlockSource:
    r"""Shuffled blocks of row ids :math:`0, \dots, N - 1` (e.g. the users
    whose interaction rows a denoiser reconstructs), every row once per
    epoch; among :math:`W` processes each takes its part of every round of
    :math:`W` blocks (:func:`shard_slices`), so that :math:`W` processes at
    block size :math:`B` see the blocks of one process at :math:`WB`.

    Args:
        num_rows (int): :math:`N`.
        batch_size (int): Rows per block (the last may be smaller).
        shard (tuple, optional): :obj:`(rank, world_size)` of this process
            (the same generator in every process).
            (default: :obj:`(0, 1)`)
    """
    def __init__(self, num_rows: int, batch_size: int,
                 shard: Tuple[int, int] = (0, 1)):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rank, world = shard
        if not 0 <= rank < world:
            raise ValueError(f"shard must be (rank, world_size) with "
                             f"0 <= rank < world_size, got {shard}")
        self.num_rows, self.batch_size = int(num_rows), int(batch_size)
        self.rank, self.world_size = int(rank), int(world)

    def with_shard(self, rank: int, world_size: int) -> 'RowBlockSource':
        r"""The same blocks, this process's share among :obj:`world_size`."""
        return RowBlockSource(self.num_rows, self.batch_size,
                              (rank, world_size))

    def _slices(self) -> List[slice]:
        return shard_slices(self.num_rows, self.batch_size, self.rank,
                            self.world_size)

    def __len__(self) -> int:
        return len(self._slices())

    def batches(self, epoch: int,
                generator: Optional[torch.Generator] = None
                ) -> Iterator[Tensor]:
        order = torch.randperm(self.num_rows, generator=generator)
        return (order[part] for part in self._slices())
