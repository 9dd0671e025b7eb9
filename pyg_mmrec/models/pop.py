"""Most-popular baseline."""
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import split_edge_index
from .base import Recommender


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
        item = split_edge_index(data, 'train')[1]
        counts = torch.bincount(item, minlength=self.num_items).float()
        self.register_buffer('item_count', counts)

    def score(self, users: Tensor) -> Tensor:
        return self.item_count.repeat(users.numel(), 1)
