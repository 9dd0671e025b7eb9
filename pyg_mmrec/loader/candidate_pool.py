r"""Extra candidate items in sampled mini-batches: a
:class:`~pyg_mmrec.loader.NeighborSource` whose subgraphs also hold a few
items drawn per batch by popularity, so that a model choosing hard
negatives among the subgraph's items (FMCNS's causal sampler) can reach
items beyond the sampled neighbourhood, with embeddings computed on the
subgraph like every other item's."""
from typing import Optional, Sequence, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..graphs.pairs import PairIndex
from .neighbor import (
    EDGE_TYPE,
    REV_EDGE_TYPE,
    NegativeFn,
    NeighborSource,
    ReplaceNegatives,
    _Transform,
)


class AddPoolItems(ReplaceNegatives):
    r"""A :class:`~torch_geometric.loader.LinkNeighborLoader` transform for
    triplet batches: replaces the negatives as :class:`ReplaceNegatives`
    does (unless :obj:`negatives` is :obj:`None`), then draws
    :obj:`num_extra` items with probability

    .. math::
        P(i) \propto (d_i + 1)^{\alpha}

    (:math:`d_i` the training degree; :math:`\alpha = 0` is uniform over
    all items) and adds those not yet in the subgraph, with their edges of
    :obj:`graph` to the subgraph's users, exactly as the replaced negatives
    are added. Draws repeat with replacement, so a batch gains at most
    :obj:`num_extra` items. The draws use the global random number
    generator, which the loader seeds per epoch and worker.

    Args:
        graph (PairIndex): The loader's (user, item) edges (the training
            graph).
        negatives (callable, optional): See :class:`ReplaceNegatives`;
            :obj:`None` keeps the loader's negatives.
        num_extra (int): Items drawn per batch, :math:`M`.
        exponent (float): :math:`\alpha`. (default: :obj:`0.0`)
        edge_types (tuple): The forward and reverse edge types.
            (default: :obj:`(EDGE_TYPE, REV_EDGE_TYPE)`)
    """
    def __init__(self, graph: PairIndex, negatives: Optional[NegativeFn],
                 num_extra: int, exponent: float = 0.0,
                 edge_types=(EDGE_TYPE, REV_EDGE_TYPE)):
        super().__init__(graph, negatives, edge_types)
        if num_extra < 0:
            raise ValueError(f"'num_extra' must be >= 0 (got {num_extra})")
        self.num_extra, self.exponent = int(num_extra), float(exponent)
        weight = (graph.item_degree().double() + 1.0).pow(exponent)
        self.cdf = (weight / weight.sum()).cumsum(0)

    def draw(self) -> Tensor:
        r"""The :math:`M` extra items of a batch (with repeats)."""
        u = torch.rand(self.num_extra, dtype=self.cdf.dtype) * self.cdf[-1]
        return torch.searchsorted(self.cdf, u).clamp_(
            max=self.cdf.numel() - 1)

    def __call__(self, batch: HeteroData) -> HeteroData:
        if self.negatives is not None:
            batch = super().__call__(batch)
        if self.num_extra > 0:
            self.join_items(batch, self.draw())
        return batch


class PoolNeighborSource(NeighborSource):
    r"""A :class:`~pyg_mmrec.loader.NeighborSource` whose subgraphs also
    hold :obj:`num_extra` items per batch (:class:`AddPoolItems`), each
    with its training edges to the sampled users.

    Args:
        graph (PairIndex): The training graph.
        batch_size (int): Triples per batch.
        num_extra (int): Extra items per batch, :math:`M`.
        exponent (float): Their popularity exponent :math:`\alpha`.
            (default: :obj:`0.0`, uniform)
        **kwargs: The other arguments of
            :class:`~pyg_mmrec.loader.NeighborSource`.
    """
    def __init__(self, graph: PairIndex, batch_size: int, num_extra: int,
                 exponent: float = 0.0,
                 num_neighbors: Union[str, Sequence[int]] = (10, 10),
                 **kwargs):
        super().__init__(graph, batch_size, num_neighbors, **kwargs)
        replace = self.transform.replace
        self.num_extra = int(num_extra)
        self.transform = _Transform(AddPoolItems(
            self.graph, None if replace is None else replace.negatives,
            num_extra, exponent))

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f', num_extra={self.num_extra})'
