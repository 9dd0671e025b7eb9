r"""Batch sources: what the trainer iterates over in an epoch."""
from typing import Iterator, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor

from pyg_mmrec.graphs.pairs import PairIndex
from pyg_mmrec.loader.batch import BPRBatch


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


def _init_sharded(source, graph: PairIndex, batch_size: int, shard: tuple,
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
            takes every :obj:`world_size`-th batch of the shared shuffled
            order, from :obj:`rank` on. (default: :obj:`(0, 1)`)
        exclude (PairIndex, optional): The pairs negatives avoid, if not
            :obj:`graph` (e.g. every interaction, to reproduce an original
            that leaks the held-out items this way). (default: :obj:`None`)
    """
    def __init__(self, graph: PairIndex, batch_size: int,
                 shard: tuple = (0, 1), exclude: Optional[PairIndex] = None):
        _init_sharded(self, graph, batch_size, shard, exclude)

    def __len__(self) -> int:
        total = -(-self.graph.num_pairs // self.batch_size)
        return len(range(self.rank, total, self.world_size))

    def batches(self, epoch: int,
                generator: Optional[torch.Generator] = None
                ) -> Iterator[BPRBatch]:
        num_pairs = self.graph.num_pairs
        perm = torch.randperm(num_pairs, generator=generator)
        user, pos = self.graph.edge_index[:, perm]
        neg = self.exclude.uniform_negatives(user, generator)
        starts = range(0, num_pairs, self.batch_size)
        for start in starts[self.rank::self.world_size]:
            sl = slice(start, start + self.batch_size)
            yield BPRBatch(user[sl], pos[sl], neg[sl])

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(pairs={self.graph.num_pairs}, '
                f'batch_size={self.batch_size})')


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
        shard (tuple, optional): :obj:`(rank, world_size)`: this process
            takes every :obj:`world_size`-th step, from :obj:`rank` on.
            (default: :obj:`(0, 1)`)
        exclude (PairIndex, optional): The pairs negatives and intervention
            items avoid, if not :obj:`graph`. (default: :obj:`None`)
    """
    def __init__(self, graph: PairIndex, batch_size: int,
                 shard: tuple = (0, 1), exclude: Optional[PairIndex] = None):
        _init_sharded(self, graph, batch_size, shard, exclude)
        self.users = (self.graph.user_degree() > 0).nonzero().view(-1)
        if self.users.numel() == 0:
            raise ValueError("the training graph has no interactions")

    def __len__(self) -> int:
        steps = self.graph.num_pairs // self.batch_size + 1
        return len(range(self.rank, steps, self.world_size))

    def batches(self, epoch: int,
                generator: Optional[torch.Generator] = None
                ) -> Iterator[BPRBatch]:
        graph, size = self.graph, min(self.batch_size, self.users.numel())
        degree = graph.user_degree()
        for _ in range(len(self)):
            pick = torch.randperm(self.users.numel(), generator=generator)
            user = self.users[pick[:size]]
            offset = (torch.rand(size, generator=generator) *
                      degree[user]).long().clamp_(max=degree[user] - 1)
            pos = graph.edge_index[1, graph.ptr[user] + offset]
            neg = self.exclude.uniform_negatives(user, generator)
            intervention = self.exclude.uniform_negatives(user, generator)
            yield BPRBatch(user, pos, neg, intervention=intervention)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(users={self.users.numel()}, '
                f'batch_size={self.batch_size})')


class RowBlockSource:
    r"""Shuffled blocks of row ids :math:`0, \dots, N - 1` (e.g. the users
    whose interaction rows a denoiser reconstructs), every row once per
    epoch.

    Args:
        num_rows (int): :math:`N`.
        batch_size (int): Rows per block (the last may be smaller).
    """
    def __init__(self, num_rows: int, batch_size: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.num_rows, self.batch_size = int(num_rows), int(batch_size)

    def __len__(self) -> int:
        return -(-self.num_rows // self.batch_size)

    def batches(self, epoch: int,
                generator: Optional[torch.Generator] = None
                ) -> Iterator[Tensor]:
        return iter(torch.randperm(self.num_rows, generator=generator)
                    .split(self.batch_size))
