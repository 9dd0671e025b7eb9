"""BM3."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import require_features
from ..graphs import (
    PairIndex,
)
from ..loader import BPRBatch, NeighborSource, Subgraph, TripletSource
from ..loader.sources import BatchSource
from ..nn import LightGCNEncoder
from ..nn.features import feature_tables
from .base import Recommender
from .registry import register_model


def cosine_loss(a: Tensor, b: Tensor) -> Tensor:
    r""":math:`1 - \frac{1}{B} \sum_b \cos(\mathbf{a}_b, \mathbf{b}_b)` of
    two :obj:`[B, d]` tensors."""
    return 1.0 - F.cosine_similarity(a, b, dim=-1).mean()


@register_model('bm3')
class BM3(Recommender):
    r"""BM3 from `"Bootstrap Latent Representations for Multi-modal
    Recommendation" <https://arxiv.org/abs/2207.05969>`_ (WWW 2023): a
    negative-free, SimSiam-style recommender.

    LightGCN over the symmetrically normalised training graph (no
    self-loops), averaged over layers 0..L, with the item ID embeddings
    added once more: :math:`\mathbf{h}_u = \mathbf{H}_u`,
    :math:`\mathbf{h}_i = \mathbf{H}_i + \mathbf{e}_i`. A shared linear
    predictor :math:`P` maps the online views; the targets are the same
    representations under dropout :math:`\mathrm{Drop}_p` with the gradient
    stopped (:math:`\mathrm{sg}`). On a batch of (user, positive) pairs,
    with :math:`C(\mathbf{a}, \mathbf{b}) = 1 - \overline{\cos}`
    (:obj:`cosine_loss`) and the projected features
    :math:`\mathbf{f}_{m,i} = \mathbf{W}_m \mathbf{x}_{m,i} + \mathbf{b}_m`:

    .. math::
        \mathcal{L}_{rec} &= C(P\mathbf{h}_u, \mathrm{sg}\,\mathrm{Drop}_p
        \mathbf{h}_i) + C(P\mathbf{h}_i, \mathrm{sg}\,\mathrm{Drop}_p
        \mathbf{h}_u) \\
        \mathcal{L}_{align} &= \textstyle\sum_m C(P\mathbf{f}_{m,i},
        \mathrm{sg}\,\mathrm{Drop}_p \mathbf{h}_i), \qquad
        \mathcal{L}_{mask} = \textstyle\sum_m C(P\mathbf{f}_{m,i},
        \mathrm{sg}\,\mathrm{Drop}_p \mathbf{f}_{m,i}) \\
        \mathcal{L} &= \mathcal{L}_{rec} + \lambda_r
        \frac{\lVert \mathbf{H}_U \rVert_F + \lVert \mathbf{H}_I + \mathbf{E}_I
        \rVert_F}{I} + \lambda_c (\mathcal{L}_{align} + \mathcal{L}_{mask})

    (the regulariser as MMRec's :obj:`EmbLoss`: un-squared Frobenius norms
    of all propagated rows, over the item count). Scores are
    :math:`\langle P\mathbf{h}_u, P\mathbf{h}_i \rangle`. Its batches are
    (user, positive) pairs: no negative is drawn
    (:class:`~pyg_mmrec.loader.TripletSource` with :obj:`negatives=False`).

    Differences from the reference code (``enoche/BM3``, MMRec's
    ``bm3.py``):

    * The predictor, the projections and the dropout targets are computed
      for the batch's rows only (the original maps every user and item and
      drops out the whole matrices, then indexes them): the same values,
      except that a row repeated in a batch gets independent dropout masks
      here (one mask per matrix row there), and a step costs
      :math:`O(B \cdot F)` in the features instead of :math:`O(I \cdot
      F)`.
    * :obj:`train_features` (default :obj:`True`, as the original, which
      trains the raw feature tables through
      :obj:`nn.Embedding.from_pretrained(freeze=False)`, unlike the paper's
      description); :obj:`False` keeps them fixed (no Adam state for
      :math:`I \times \sum_m F_m` entries).
    * Mini-batch training (:obj:`sampler="neighbor"`, ours): LightGCN on
      the sampled subgraph with the full graph's degrees (pairs, no
      negatives), and the regulariser over the subgraph's rows (still
      divided by the item count): the whole graph as a subgraph gives the
      full-graph losses.

    Args:
        data (HeteroData): The dataset; it must carry item features.
        embedding_dim (int): :math:`d`. (default: :obj:`64`)
        num_layers (int): LightGCN layers :math:`L` (:obj:`n_layers`).
            (default: :obj:`1`)
        dropout (float): :math:`p` of the target views. (default:
            :obj:`0.5`)
        reg_weight (float): :math:`\lambda_r`. (default: :obj:`0.1`)
        cl_weight (float): :math:`\lambda_c`. (default: :obj:`2.0`)
        train_features (bool): Train the raw feature tables.
            (default: :obj:`True`)
    """
    requires_features = True
    supports_subgraph = True
    uses_negatives = False
    repr_settings = ('embedding_dim', 'num_layers')

    def __init__(self, data: HeteroData, embedding_dim: int = 64,
                 num_layers: int = 1, dropout: float = 0.5,
                 reg_weight: float = 0.1, cl_weight: float = 2.0,
                 train_features: bool = True):
        super().__init__(data)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        feats = require_features(data, type(self).__name__)
        self.modalities = list(feats)
        self.embedding_dim, self.num_layers = embedding_dim, num_layers
        self.dropout, self.reg_weight = dropout, reg_weight
        self.cl_weight, self.train_features = cl_weight, train_features
        self.user_embedding = torch.nn.Embedding(self.num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(self.num_items, embedding_dim)
        self.encoder = LightGCNEncoder(num_layers, combine='mean',
                                       symmetric=True)
        # The full graph's degrees normalise a sampled subgraph too.
        self.register_training_graph(data)
        self.features = feature_tables(feats, train_features)
        self.projections = torch.nn.ModuleDict({
            m: torch.nn.Linear(x.size(1), embedding_dim)
            for m, x in feats.items()})
        self.predictor = torch.nn.Linear(embedding_dim, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        for lin in [*self.projections.values(), self.predictor]:
            lin.reset_parameters()  # the default bias
            torch.nn.init.xavier_normal_(lin.weight)

    def batch_source(self, graph: PairIndex, batch_size: int,
                     shard: Tuple[int, int] = (0, 1),
                     exclude: Optional[PairIndex] = None) -> BatchSource:
        r"""(user, positive) pairs, every training pair once per epoch: no
        negative is drawn."""
        return TripletSource(graph, batch_size, shard=shard, exclude=exclude,
                             negatives=False)

    def neighbor_source(self, graph: PairIndex, batch_size: int,
                        **kwargs) -> BatchSource:
        r"""Sampled subgraphs around (user, positive) pairs: no negative is
        drawn (:obj:`negatives` is ignored)."""
        kwargs['negatives'] = None
        return NeighborSource(graph, batch_size, **kwargs)

    def propagate(self, subgraph: Optional[Subgraph] = None
                  ) -> Tuple[Tensor, Tensor]:
        r"""The online representations :math:`(\mathbf{H}_U, \mathbf{H}_I +
        \mathbf{E}_I)` of every user and item, or of the subgraph's nodes
        (before the predictor)."""
        if subgraph is None:
            e_u, e_i = self.user_embedding.weight, self.item_embedding.weight
        else:
            e_u = self.user_embedding(subgraph.user_id)
            e_i = self.item_embedding(subgraph.item_id)
        adj = self.training_adjacency(subgraph)
        user, item = self.encoder(torch.cat([e_u, e_i]), adj).split(
            [e_u.size(0), e_i.size(0)])
        return user, item + e_i

    def encode(self, subgraph: Optional[Subgraph] = None
               ) -> Tuple[Tensor, Tensor]:
        user, item = self.propagate(subgraph)
        return self.predictor(user), self.predictor(item)

    def projected(self, modality: str, items: Tensor) -> Tensor:
        r""":math:`\mathbf{f}_{m,i}` of :obj:`items`."""
        x = getattr(self.features, modality)
        return self.projections[modality](x.index_select(0, items))

    def _target(self, x: Tensor) -> Tensor:
        # The target view: dropout (always, as the original), no gradient
        # (detached: dropout with p = 0 may return its input itself).
        return F.dropout(x.detach(), self.dropout, training=True)

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        h_u, h_i = self.propagate(batch.subgraph)
        user, pos, _ = batch.node_index()
        u, i = h_u[user], h_i[pos]
        t_u, t_i = self._target(u), self._target(i)
        rec = (cosine_loss(self.predictor(u), t_i)
               + cosine_loss(self.predictor(i), t_u))
        align = mask = h_u.new_zeros(())
        for m in self.modalities:
            f = self.projected(m, batch.pos)
            p_f = self.predictor(f)
            align = align + cosine_loss(p_f, t_i)
            mask = mask + cosine_loss(p_f, self._target(f))
        reg = (h_u.norm() + h_i.norm()) / self.num_items
        return {'rec': rec, 'reg': self.reg_weight * reg,
                'align': self.cl_weight * align,
                'mask': self.cl_weight * mask}
