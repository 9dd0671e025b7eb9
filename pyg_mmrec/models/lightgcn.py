"""LightGCN."""
from typing import Dict, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import split_edge_index
from ..graphs import bipartite_adjacency
from ..nn import LightGCNEncoder
from ..nn.losses import bpr_loss, l2_reg
from ..train.sampler import BPRBatch
from .base import Recommender


class LightGCN(Recommender):
    r"""LightGCN from `"LightGCN: Simplifying and Powering Graph Convolution
    Network for Recommendation" <https://arxiv.org/abs/2002.02126>`_.

    User and item ID embeddings are propagated over the symmetrically
    normalised training graph (no self-loops) and averaged over layers:

    .. math::
        \mathbf{E}^{(l+1)} = \mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}
        \mathbf{E}^{(l)}, \qquad
        \mathbf{E} = \frac{1}{L+1}\sum_{l=0}^{L} \mathbf{E}^{(l)}

    trained with BPR plus an L2 penalty on the batch's layer-0 embeddings.

    Args:
        data (HeteroData): The dataset (only training interactions are used).
        embedding_dim (int): Embedding size. (default: :obj:`64`)
        num_layers (int): Propagation layers. (default: :obj:`3`)
        reg_weight (float): Weight of the L2 penalty. (default: :obj:`1e-4`)
    """
    def __init__(self, data: HeteroData, embedding_dim: int = 64,
                 num_layers: int = 3, reg_weight: float = 1e-4):
        super().__init__(data)
        self.embedding_dim, self.reg_weight = embedding_dim, reg_weight
        self.embedding = torch.nn.Embedding(self.num_users + self.num_items,
                                            embedding_dim)
        self.encoder = LightGCNEncoder(num_layers, combine='mean',
                                       symmetric=True)
        adj = bipartite_adjacency(split_edge_index(data, 'train'),
                                  self.num_users, self.num_items)
        self.register_buffer('adj', adj, persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.embedding.weight)

    def forward(self) -> Tuple[Tensor, Tensor]:
        out = self.encoder(self.embedding.weight, self.adj)
        return out.split([self.num_users, self.num_items])

    def loss(self, batch: BPRBatch) -> Dict[str, Tensor]:
        user_emb, item_emb = self()
        u, p, n = user_emb[batch.user], item_emb[batch.pos], item_emb[batch.neg]
        ego = self.embedding.weight
        reg = l2_reg(ego[batch.user], ego[self.num_users + batch.pos],
                     ego[self.num_users + batch.neg])
        return {'bpr': bpr_loss((u * p).sum(-1), (u * n).sum(-1)),
                'reg': self.reg_weight * reg}

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users} users, '
                f'{self.num_items} items, dim={self.embedding_dim}, '
                f'num_layers={self.encoder.num_layers})')
