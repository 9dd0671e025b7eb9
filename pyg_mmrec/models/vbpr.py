"""VBPR."""
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import require_features
from ..loader import BPRBatch, Subgraph
from ..nn.losses import bpr_loss, l2_reg
from .base import Recommender
from .registry import register_model


@register_model('vbpr')
class VBPR(Recommender):
    r"""VBPR from `"VBPR: Visual Bayesian Personalized Ranking from Implicit
    Feedback" <https://arxiv.org/abs/1510.01784>`_, with all available
    modalities concatenated as the item content (as in MMRec).

    .. math::
        s(u, i) = \langle \boldsymbol{\gamma}_u, \boldsymbol{\gamma}_i \rangle
        + \langle \boldsymbol{\theta}_u, \mathbf{W} \mathbf{f}_i \rangle

    where :math:`\mathbf{f}_i` are item :math:`i`'s concatenated raw
    features and :math:`\mathbf{W}` a learned linear map (without bias: it
    would add a per-user constant that cancels in every ranking).

    Args:
        data (HeteroData): The dataset; it must carry item features.
        embedding_dim (int): Size of :math:`\boldsymbol{\gamma}` and of
            :math:`\boldsymbol{\theta}`. (default: :obj:`64`)
        reg_weight (float): Weight of the L2 penalty on the batch's user and
            item vectors. (default: :obj:`1e-4`)
    """
    requires_features = True
    supports_subgraph = True

    repr_settings = ('embedding_dim', )

    def __init__(self, data: HeteroData, embedding_dim: int = 64,
                 reg_weight: float = 1e-4):
        super().__init__(data)
        feats = require_features(data, type(self).__name__)
        self.embedding_dim, self.reg_weight = embedding_dim, reg_weight
        self.register_buffer('features',
                             torch.cat(list(feats.values()), dim=-1))
        self.user_embedding = torch.nn.Embedding(self.num_users,
                                                 2 * embedding_dim)
        self.item_embedding = torch.nn.Embedding(self.num_items, embedding_dim)
        self.content = torch.nn.Linear(self.features.size(1), embedding_dim,
                                       bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        self.content.reset_parameters()

    def item_representation(self, items: Optional[Tensor] = None) -> Tensor:
        r""":math:`[\boldsymbol{\gamma}_i \| \mathbf{W} \mathbf{f}_i]` of
        :obj:`items` (all items when :obj:`None`)."""
        if items is None:
            return torch.cat([self.item_embedding.weight,
                              self.content(self.features)], dim=-1)
        return torch.cat([self.item_embedding(items),
                          self.content(self.features.index_select(0, items))],
                         dim=-1)

    def encode(self, subgraph: Optional[Subgraph] = None
               ) -> Tuple[Tensor, Tensor]:
        if subgraph is None:
            return self.user_embedding.weight, self.item_representation()
        return (self.user_embedding(subgraph.user_id),
                self.item_representation(subgraph.item_id))

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        # No graph: only the batch's rows are computed, whatever the batch,
        # and each of its distinct items once (the content map reads every
        # feature column of a row: the epoch's dominant cost).
        user_emb = self.user_embedding(batch.user)
        items, inverse = torch.unique(torch.cat([batch.pos, batch.neg]),
                                      return_inverse=True)
        p, n = self.item_representation(items)[inverse].chunk(2)
        return {'bpr': bpr_loss((user_emb * p).sum(-1),
                                (user_emb * n).sum(-1)),
                'reg': self.reg_weight * l2_reg(user_emb, p, n)}
