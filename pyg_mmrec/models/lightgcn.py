"""LightGCN."""
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..loader import BPRBatch, Subgraph
from ..nn import LightGCNEncoder
from ..nn.losses import bpr_loss, l2_reg
from .base import Recommender
from .registry import register_model


@register_model('lightgcn')
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
    On a sampled :class:`~pyg_mmrec.loader.Subgraph` the same propagation
    runs over the subgraph's edges with the full training graph's degrees
    (:func:`~pyg_mmrec.graphs.subgraph_adjacency`): a user whose whole
    neighbourhood was sampled aggregates exactly as on the full graph.
    (PyG's mini-batch :class:`~torch_geometric.nn.models.LightGCN`
    normalises by the subgraph's own degrees, which shrink with the
    fan-out.)

    Args:
        data (HeteroData): The dataset (only training interactions are used).
        embedding_dim (int): Embedding size. (default: :obj:`64`)
        num_layers (int): Propagation layers. (default: :obj:`3`)
        reg_weight (float): Weight of the L2 penalty. (default: :obj:`1e-4`)
    """
    supports_subgraph = True

    repr_settings = ('embedding_dim', 'num_layers')

    def __init__(self, data: HeteroData, embedding_dim: int = 64,
                 num_layers: int = 3, reg_weight: float = 1e-4):
        super().__init__(data)
        self.embedding_dim, self.reg_weight = embedding_dim, reg_weight
        self.num_layers = num_layers
        self.embedding = torch.nn.Embedding(self.num_users + self.num_items,
                                            embedding_dim)
        self.encoder = LightGCNEncoder(num_layers, combine='mean',
                                       symmetric=True)
        # The full graph's degrees normalise a sampled subgraph too.
        self.register_training_graph(data)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.embedding.weight)

    def ego_embeddings(self, subgraph: Optional[Subgraph] = None) -> Tensor:
        r"""The layer-0 embeddings of all nodes, or of the subgraph's nodes
        (users first, then items)."""
        if subgraph is None:
            return self.embedding.weight
        return self.embedding(torch.cat([subgraph.user_id,
                                         self.num_users + subgraph.item_id]))

    def encode(self, subgraph: Optional[Subgraph] = None
               ) -> Tuple[Tensor, Tensor]:
        return self.propagate(self.ego_embeddings(subgraph), subgraph)

    def propagate(self, x: Tensor, subgraph: Optional[Subgraph] = None
                  ) -> Tuple[Tensor, Tensor]:
        r"""LightGCN from the layer-0 embeddings :obj:`x` over the training
        graph or the subgraph."""
        sizes = ([self.num_users, self.num_items] if subgraph is None
                 else [subgraph.num_users, subgraph.num_items])
        return self.encoder(x, self.training_adjacency(subgraph)).split(sizes)

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        ego = self.ego_embeddings(batch.subgraph)
        user_emb, item_emb = self.propagate(ego, batch.subgraph)
        user, pos, neg = batch.node_index()
        u, p, n = user_emb[user], item_emb[pos], item_emb[neg]
        num_users = user_emb.size(0)
        reg = l2_reg(ego[user], ego[num_users + pos], ego[num_users + neg])
        return {'bpr': bpr_loss((u * p).sum(-1), (u * n).sum(-1)),
                'reg': self.reg_weight * reg}
