"""Most-popular baseline."""
from typing import Optional

from torch import Tensor
from torch_geometric.data import HeteroData

from ..graphs import train_graph
from .base import Recommender
from .registry import register_model


@register_model('pop')
class Pop(Recommender):
    r"""Recommends every user the items with the most training interactions:
    the sanity floor any personalised model must clear.

    .. math::
        s(u, i) = |\{v : (v, i) \in \mathcal{E}_{\text{train}}\}|

    Args:
        data (HeteroData): The dataset.
    """
    trainable = False

    def __init__(self, data: HeteroData):
        super().__init__(data)
        counts = train_graph(data).item_degree().float()
        self.register_buffer('item_count', counts)

    def score(self, users: Tensor, items: Optional[Tensor] = None) -> Tensor:
        if items is None:
            return self.item_count.repeat(users.numel(), 1)
        return self.item_count[items]
