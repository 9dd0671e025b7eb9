r"""MCLN's distinct-user batches (:class:`~pyg_mmrec.loader.
DistinctUserSource`) on sampled subgraphs."""
from dataclasses import replace
from typing import Iterator, Optional, Sequence, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..graphs.pairs import PairIndex
from .batch import BPRBatch
from .neighbor import (
    EDGE_TYPE,
    NegativeFn,
    NeighborSource,
    ReplaceNegatives,
    to_bpr_batch,
)
from .sources import DistinctUserSource


class JoinDistinctUserItems:
    r"""The loader transform of :class:`DistinctUserNeighborSource` for one
    epoch: row :math:`k` of the epoch (the loader's :obj:`input_id`) gets
    the negative :obj:`neg[k]` (if given; else those of :obj:`join`'s
    negatives function, if any; else the loader's own) and the intervention
    item :obj:`intervention[k]`; items not yet in the subgraph join it with
    their training edges to its users
    (:meth:`~pyg_mmrec.loader.ReplaceNegatives.join_items`).

    Args:
        join (ReplaceNegatives): Joins items (and draws negatives when
            :obj:`neg` is :obj:`None` and it has a negatives function).
        neg (torch.Tensor, optional): The epoch's negatives :obj:`[N]`.
        intervention (torch.Tensor): The epoch's intervention items
            :obj:`[N]`.
    """
    def __init__(self, join: ReplaceNegatives, neg: Optional[Tensor],
                 intervention: Tensor):
        self.join, self.neg, self.intervention = join, neg, intervention

    def __call__(self, batch: HeteroData) -> BPRBatch:
        rows = batch[EDGE_TYPE].input_id
        if self.neg is not None:
            batch['item'].dst_neg_index = self.join.join_items(
                batch, self.neg[rows])
        elif self.join.negatives is not None:
            batch = self.join(batch)
        intervention = self.intervention[rows]
        self.join.join_items(batch, intervention)
        return replace(to_bpr_batch(batch), intervention=intervention)


class DistinctUserNeighborSource(NeighborSource):
    r"""MCLN's batches on sampled subgraphs: the steps of
    :class:`~pyg_mmrec.loader.DistinctUserSource` (distinct users, one
    training positive, one true negative and one intervention item each;
    :math:`\lfloor |\mathcal{E}_{train}| / B \rfloor + 1` steps, drawn from
    the epoch's generator as that source draws them), each on the
    neighbourhood PyG's :class:`~torch_geometric.loader.LinkNeighborLoader`
    samples around its users and positives (and the loader's own triplet
    negatives, as in :class:`~pyg_mmrec.loader.NeighborSource`), over the
    training graph only. The batch's negatives and intervention items join
    the subgraph with their training edges to its users
    (:obj:`JoinDistinctUserItems`); :obj:`BPRBatch.intervention` carries
    the intervention items.

    :obj:`negatives`: :obj:`"uniform"` keeps
    :class:`~pyg_mmrec.loader.DistinctUserSource`'s true negatives (so an
    epoch has the same (user, positive, negative, intervention) rows as the
    full-graph source with the same generator); :obj:`"popularity"` (or a
    :obj:`NegativeFn`) replaces them in the loader's transform, as
    :class:`~pyg_mmrec.loader.NeighborSource` does; :obj:`"loader"` keeps
    the loader's triplet negatives (uniform over all items, possibly
    positives; for comparison only). The intervention items are always
    :class:`~pyg_mmrec.loader.DistinctUserSource`'s true negatives.

    Unlike :class:`~pyg_mmrec.loader.NeighborSource`, an epoch need not
    visit every training pair (:attr:`every_pair_once`).

    Args:
        graph (PairIndex): The training graph.
        batch_size (int): Users per batch :math:`B` (every eligible user when
            there are fewer).
        num_neighbors (str or list): Neighbours per hop, *e.g.*
            :obj:`"10,10"`.
        negatives (str or callable): See above. (default: :obj:`"uniform"`)
        shard (tuple, optional): :obj:`(rank, world_size)`: the steps of
            :class:`~pyg_mmrec.loader.DistinctUserSource`'s rule.
            (default: :obj:`(0, 1)`)
        exclude (PairIndex, optional): The pairs negatives and intervention
            items avoid, if not :obj:`graph`. (default: :obj:`None`)
        num_workers (int): Loader worker processes. (default: :obj:`0`)
    """
    #: An epoch's positives are not every training pair once.
    every_pair_once = False

    def __init__(self, graph: PairIndex, batch_size: int,
                 num_neighbors: Union[str, Sequence[int]] = (10, 10),
                 negatives: Union[str, NegativeFn] = 'uniform',
                 shard: tuple = (0, 1), exclude: Optional[PairIndex] = None,
                 num_workers: int = 0):
        super().__init__(graph, batch_size, num_neighbors, negatives, shard,
                         exclude, num_workers)
        self.steps = DistinctUserSource(self.graph, batch_size, shard,
                                        exclude)
        # Rows per batch: the loader's batch size.
        self.batch_size = min(self.batch_size, self.steps.users.numel())
        # Joins the items (and draws "popularity" or a function's
        # negatives).
        self.join = (self.transform.replace or
                     ReplaceNegatives(self.graph, None))

    def __len__(self) -> int:
        return len(self.steps)

    def batches(self, epoch: int,
                generator: Optional[torch.Generator] = None
                ) -> Iterator[BPRBatch]:
        steps = list(self.steps.batches(epoch, generator))
        seed = int(torch.randint(2**62, (1, ), generator=generator))
        if not steps:
            return
        user = torch.cat([b.user for b in steps])
        pos = torch.cat([b.pos for b in steps])
        neg = (torch.cat([b.neg for b in steps])
               if self.negatives_name == 'uniform' else None)
        transform = JoinDistinctUserItems(
            self.join, neg, torch.cat([b.intervention for b in steps]))
        loader = self.loader(torch.stack([user, pos]), seed + self.rank,
                             transform)
        yield from self.seeded_batches(loader, seed + self.rank, len(steps))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(users='
                f'{self.steps.users.numel()}, batch_size={self.batch_size}, '
                f'num_neighbors={self.num_neighbors}, '
                f'negatives={self.negatives_name!r})')
