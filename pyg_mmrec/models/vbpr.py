"""VBPR."""
from typing import Dict, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import item_features
from ..nn.losses import bpr_loss, l2_reg
from ..train.sampler import BPRBatch
from .base import Recommender


def require_features(data: HeteroData, model: str) -> Dict[str, Tensor]:
    r"""The item features of :obj:`data`, or a clear error when it has none."""
    feats = item_features(data)
    if not feats:
        raise ValueError(
            f"{model} needs item features (x_image, x_text, x_audio, ...) but "
            f"dataset '{getattr(data, 'name', '?')}' has none; use a dataset "
            f"with *_feat.npy files or an ID-only model such as lightgcn")
    return feats


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

    def __init__(self, data: HeteroData, embedding_dim: int = 64,
                 reg_weight: float = 1e-4):
        super().__init__(data)
        feats = require_features(data, type(self).__name__)
        self.embedding_dim, self.reg_weight = embedding_dim, reg_weight
        self.register_buffer('features', torch.cat(list(feats.values()), dim=-1))
        self.user_embedding = torch.nn.Embedding(self.num_users, 2 * embedding_dim)
        self.item_embedding = torch.nn.Embedding(self.num_items, embedding_dim)
        self.content = torch.nn.Linear(self.features.size(1), embedding_dim,
                                       bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        self.content.reset_parameters()

    def forward(self) -> Tuple[Tensor, Tensor]:
        item = torch.cat([self.item_embedding.weight,
                          self.content(self.features)], dim=-1)
        return self.user_embedding.weight, item

    def loss(self, batch: BPRBatch) -> Dict[str, Tensor]:
        user_emb = self.user_embedding(batch.user)
        items = torch.cat([batch.pos, batch.neg])
        item_emb = torch.cat([self.item_embedding(items),
                              self.content(self.features[items])], dim=-1)
        p, n = item_emb.chunk(2)
        return {'bpr': bpr_loss((user_emb * p).sum(-1), (user_emb * n).sum(-1)),
                'reg': self.reg_weight * l2_reg(user_emb, p, n)}
