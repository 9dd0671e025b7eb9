"""LATTICE."""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import require_features
from ..graphs import (
    bipartite_adjacency,
    csr_transpose,
    knn_adjacency,
    train_graph,
)
from ..loader import BPRBatch, Subgraph
from ..nn import bpr_loss, l2_reg, sparse_mm
from ..nn.features import feature_tables
from ..nn.latent_graph import (
    cosine_pair_values,
    pair_union,
    sym_normalize_values,
    topk_pairs,
    weighted_propagate,
)
from .base import Recommender
from .registry import register_model


@register_model('lattice')
class LATTICE(Recommender):
    r"""LATTICE from `"Mining Latent Structures for Multimedia
    Recommendation" <https://arxiv.org/abs/2104.09036>`_ (MM 2021).

    A latent item graph is learned from projected features
    :math:`\mathbf{f}_m = \mathbf{W}_m \mathbf{X}_m + \mathbf{b}_m` and mixed
    with the frozen kNN graphs of the raw features. With
    :math:`\mathbf{K}_m` the top-:math:`k` cosine similarities of the
    :math:`\mathbf{f}_m` per row (self included),
    :math:`\boldsymbol{\alpha} = \mathrm{softmax}(\mathbf{w})`,
    :math:`\mathcal{N}(\mathbf{K}) = \mathbf{D}^{-1/2} \mathbf{K}
    \mathbf{D}^{-1/2}` (weighted row degrees) and :math:`\mathbf{S}^0_m =
    \mathcal{N}(\mathbf{K}^0_m)` on the raw features:

    .. math::
        \mathbf{S} = (1 - \lambda)\, \mathcal{N}\Big(\sum_m \alpha_m
        \mathbf{K}_m\Big) + \lambda \sum_m \alpha_m \mathbf{S}^0_m, \qquad
        \mathbf{h} = \mathbf{S}^{L_i} \mathbf{E}_I.

    The backbone is LightGCN over the random-walk normalised training graph
    with self-loops :math:`\mathbf{D}^{-1}(\mathbf{A} + \mathbf{I})`,
    averaged over layers :math:`0..L`: :math:`\mathbf{e}_u =
    \mathbf{H}_u`, :math:`\mathbf{e}_i = \mathbf{H}_i +
    \mathbf{h}_i / \lVert \mathbf{h}_i \rVert`. The loss is BPR plus
    :math:`\lambda_r \frac{1}{2B}\sum_b (\lVert \mathbf{e}_u \rVert^2 +
    \lVert \mathbf{e}_p \rVert^2 + \lVert \mathbf{e}_n \rVert^2)`; the
    original decays the learning rate by :math:`0.96^{e/50}` (the trainer's
    :obj:`lr_decay: [0.96, 50]`, set by the dataset configurations).

    **No** :math:`I \times I` **tensor**: the neighbour pairs of
    :math:`\mathbf{K}_m` are selected without gradient by a chunked
    top-:math:`k` (:obj:`topk_pairs`) and the
    similarity values recomputed with gradient on those pairs only
    (:mod:`pyg_mmrec.nn.latent_graph`): the values and gradients of the
    dense construction at :math:`O(I k)` memory. The pairs are stored in
    the state dict (a checkpoint scores with the graph it trained on).

    Differences from the reference code (``CRIPAC-DIG/LATTICE``, MMRec's
    ``lattice.py``); :obj:`faithful=True` restores the first two:

    * **Gradient through the graph**: the original rebuilds the graph
      with gradient on the first batch of each epoch and reuses it
      detached for the other batches (the projections and modality weights
      learn from one batch per epoch). Here the pairs are selected at the
      start of each epoch and their values recomputed from the current
      projections at every batch, with gradient (the graph is learned
      jointly, as the paper describes).
    * **Evaluation graph**: the original rebuilds the graph (pairs
      included) from the end-of-epoch weights at every batch of evaluated
      users; here evaluation uses the pairs the epoch trained on with the
      current values, computed once per evaluation. Faithful: pairs and
      values rebuilt from the current weights, once per evaluation (the
      same graph as the original's, whose weights do not change during an
      evaluation).
    * A row whose degree is not positive (negative similarities) gets 0,
      not :obj:`NaN`.
    * The regulariser divides by the batch's size (the original by the
      configured one, also for the last batch); any number of modalities;
      the LightGCN backbone only (the original also offers NGCF and MF);
      no mini-batch training (the learned graph's normalisation reads
      every item's neighbours).

    Args:
        data (HeteroData): The dataset; it must carry item features.
        embedding_dim (int): :math:`d`. (default: :obj:`64`)
        feature_dim (int): Width of :math:`\mathbf{f}_m`
            (:obj:`feat_embed_dim`). (default: :obj:`64`)
        num_ui_layers (int): LightGCN layers :math:`L`
            (:obj:`len(weight_size)`). (default: :obj:`2`)
        num_item_layers (int): Item-graph hops :math:`L_i`
            (:obj:`n_layers`). (default: :obj:`1`)
        knn_k (int): :math:`k`. (default: :obj:`10`)
        lambda_coeff (float): :math:`\lambda`. (default: :obj:`0.9`)
        reg_weight (float): :math:`\lambda_r`. (default: :obj:`1e-5`)
        train_features (bool): Train the raw feature tables (the
            original does). (default: :obj:`True`)
        knn_method (str): :func:`~pyg_mmrec.graphs.knn_graph`'s back-end,
            for both graphs. (default: :obj:`"auto"`)
        faithful (bool): The original's graph schedule (see above).
            (default: :obj:`False`)
    """
    requires_features = True
    repr_settings = ('embedding_dim', 'num_ui_layers', 'knn_k', 'faithful')

    def __init__(self, data: HeteroData, embedding_dim: int = 64,
                 feature_dim: int = 64, num_ui_layers: int = 2,
                 num_item_layers: int = 1, knn_k: int = 10,
                 lambda_coeff: float = 0.9, reg_weight: float = 1e-5,
                 train_features: bool = True, knn_method: str = 'auto',
                 faithful: bool = False):
        super().__init__(data)
        if not 0.0 <= lambda_coeff <= 1.0:
            raise ValueError(f"lambda_coeff must be in [0, 1], got "
                             f"{lambda_coeff}")
        for name, value in (('num_ui_layers', num_ui_layers),
                            ('num_item_layers', num_item_layers)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        feats = require_features(data, type(self).__name__)
        self.modalities: List[str] = list(feats)
        self.embedding_dim, self.feature_dim = embedding_dim, feature_dim
        self.num_ui_layers, self.num_item_layers = (num_ui_layers,
                                                    num_item_layers)
        self.knn_k, self.lambda_coeff = knn_k, lambda_coeff
        self.reg_weight, self.train_features = reg_weight, train_features
        self.knn_method, self.faithful = knn_method, faithful
        self.user_embedding = torch.nn.Embedding(self.num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(self.num_items, embedding_dim)
        self.features = feature_tables(feats, train_features)
        self.projections = torch.nn.ModuleDict({
            m: torch.nn.Linear(x.size(1), feature_dim)
            for m, x in feats.items()})
        #: :math:`\mathbf{w}`, softmax-normalised into the modality weights.
        self.modal_weight = torch.nn.Parameter(torch.empty(len(feats)))
        adj = bipartite_adjacency(train_graph(data).edge_index,
                                  self.num_users, self.num_items,
                                  normalization='row', self_loops=True)
        self.register_buffer('adj', adj, persistent=False)
        self.register_buffer('adj_t', csr_transpose(adj), persistent=False)
        for m, x in feats.items():  # the frozen S^0_m, on the raw features
            graph = knn_adjacency(x, knn_k, weighting='similarity',
                                  normalization='sym', degree='weighted',
                                  method=knn_method)
            self.register_buffer(f'frozen_{m}', graph, persistent=False)
            self.register_buffer(f'frozen_{m}_t', csr_transpose(graph),
                                 persistent=False)
            # The learned graph's neighbours [I, k]: saved with the weights.
            self.register_buffer(f'neighbors_{m}', torch.zeros(
                self.num_items, knn_k, dtype=torch.long))
        self._union: Optional[Tuple[Tensor, List[Tensor]]] = None
        # faithful: the values of the epoch's S after its first batch
        self._detached: Optional[Tensor] = None
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        for lin in self.projections.values():
            lin.reset_parameters()
        with torch.no_grad():
            self.modal_weight.fill_(1.0 / len(self.modalities))
        self.select_pairs()

    def load_state_dict(self, *args, **kwargs):
        out = super().load_state_dict(*args, **kwargs)
        self._union, self._detached = None, None  # the loaded pairs
        return out

    # The latent graph ----------------------------------------------------
    def projected(self, modality: str) -> Tensor:
        r""":math:`\mathbf{f}_m` of every item."""
        return self.projections[modality](getattr(self.features, modality))

    @torch.no_grad()
    def select_pairs(self) -> None:
        r"""Selects the learned graph's pairs (each item's top-:math:`k`
        by the current projections' cosine similarity), no gradient."""
        for m in self.modalities:
            getattr(self, f'neighbors_{m}').copy_(topk_pairs(
                self.projected(m), self.knn_k, self.knn_method)[1].view(
                    self.num_items, self.knn_k))
        self._union, self._detached = None, None

    def pairs(self, modality: str) -> Tensor:
        r"""The learned graph's (item, neighbour) pairs :obj:`[2, I k]` of
        :obj:`modality`."""
        neighbors = getattr(self, f'neighbors_{modality}')
        row = torch.arange(self.num_items, device=neighbors.device)
        return torch.stack([row.repeat_interleave(self.knn_k),
                            neighbors.reshape(-1)])

    def learned_values(self) -> Tuple[Tensor, Tensor]:
        r"""The pairs :obj:`[2, E]` and values of
        :math:`\mathcal{N}(\sum_m \alpha_m \mathbf{K}_m)`, with gradient
        to the projections, the feature tables and :math:`\mathbf{w}`."""
        pairs = [self.pairs(m) for m in self.modalities]
        if self._union is None:
            self._union = pair_union(pairs, self.num_items)
        edge_index, positions = self._union
        alpha = torch.softmax(self.modal_weight, dim=0)
        value = alpha.new_zeros(edge_index.size(1))
        for k, (m, pos) in enumerate(zip(self.modalities, positions)):
            sim = cosine_pair_values(self.projected(m), pairs[k])
            value = value.index_add(0, pos, alpha[k] * sim)
        return edge_index, sym_normalize_values(edge_index, value,
                                                self.num_items)

    def item_graph_embedding(self) -> Tensor:
        r""":math:`\mathbf{h} = \mathbf{S}^{L_i}\mathbf{E}_I` :obj:`[I, d]`
        (before the row normalisation)."""
        alpha = torch.softmax(self.modal_weight, dim=0)
        if self.faithful and self.training and self._detached is not None:
            # The original's later batches: the whole S detached.
            edge_index, value = self._union[0], self._detached
            alpha = alpha.detach()
        else:
            if self.faithful:
                self.select_pairs()
            edge_index, value = self.learned_values()
            if self.faithful and self.training:
                self._detached = value.detach()
        h = self.item_embedding.weight
        lam = self.lambda_coeff
        for _ in range(self.num_item_layers):
            frozen = sum(alpha[k] * sparse_mm(
                getattr(self, f'frozen_{m}'), h,
                getattr(self, f'frozen_{m}_t'))
                for k, m in enumerate(self.modalities))
            learned = weighted_propagate(edge_index, value, h,
                                         self.num_items)
            h = (1.0 - lam) * learned + lam * frozen
        return h

    def on_epoch_start(self, epoch: int) -> None:
        if self.faithful:
            self._detached = None  # rebuilt on the first batch, with gradient
        else:
            self.select_pairs()

    # Recommender ---------------------------------------------------------
    def encode(self, subgraph: Optional[Subgraph] = None
               ) -> Tuple[Tensor, Tensor]:
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        out = x
        for _ in range(self.num_ui_layers):
            x = sparse_mm(self.adj, x, self.adj_t)
            out = out + x
        out = out / (self.num_ui_layers + 1)
        user, item = out.split([self.num_users, self.num_items])
        return user, item + F.normalize(self.item_graph_embedding(), dim=-1)

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        user_emb, item_emb = self.encode()
        u = user_emb[batch.user]
        p, n = item_emb[batch.pos], item_emb[batch.neg]
        return {'bpr': bpr_loss((u * p).sum(-1), (u * n).sum(-1)),
                'reg': self.reg_weight * l2_reg(u, p, n)}
