"""DRAGON."""
import math
from typing import Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import require_features
from ..graphs import (
    cooccurrence_topk,
    csr_transpose,
    mixed_knn_adjacency,
    to_sparse_csr,
    train_graph,
    urn_padded_slots,
)
from ..loader import BPRBatch
from ..nn import LightGCNEncoder, bpr_loss, sparse_mm
from ..nn.features import feature_tables
from .base import Recommender
from .freedom import default_modality_weights
from .registry import register_model


@register_model('dragon')
class DRAGON(Recommender):
    r"""DRAGON from `"Enhancing Dyadic Relations with Homogeneous Graphs for
    Multimodal Recommendation" <https://arxiv.org/abs/2301.12097>`_
    (ECAI 2023).

    **Dual representations.** Per modality :math:`m`, a user preference
    table :math:`\mathbf{P}_m` and the item features through a two-layer
    MLP, :math:`\mathbf{F}_m = \mathrm{MLP}_m(\mathbf{X}_m)` (LeakyReLU
    0.01 between), are L2-normalised row-wise and propagated over the
    symmetrically normalised training graph :math:`\hat{\mathbf{A}}` (no
    self-loops), summing the layers:

    .. math::
        \mathbf{R}_m = \sum_{l=0}^{L} \hat{\mathbf{A}}^l \,
        \mathrm{norm}([\mathbf{P}_m; \mathbf{F}_m]).

    Items concatenate the modalities; users concatenate them weighted by a
    learned per-user, per-modality scalar :math:`w_{u,m}` (the "attentive
    concatenation", soft-maxed over the modalities at initialisation only,
    then trained freely, as the original). **Homogeneous graphs:** the
    items are smoothed over the frozen item graph :math:`\mathbf{S}`
    (FREEDOM's: binary cosine kNN per modality, entries :math:`1/k`,
    mixed by :obj:`modality_weights`), and the users over the user
    co-occurrence graph :math:`\mathbf{G}` (each user's :obj:`user_k` slots
    of co-neighbours ranked by shared training items, softmax weights over
    the slots' counts):

    .. math::
        \mathbf{Z}_I = \mathbf{H}_I + \mathbf{S}^{L_m} \mathbf{H}_I, \qquad
        \mathbf{Z}_U = \mathbf{H}_U + \mathbf{G} \mathbf{H}_U,

    scoring :math:`\langle \mathbf{z}_u, \mathbf{z}_i \rangle`
    (:math:`M d` dimensions). The loss on a batch of triples is BPR in
    base 2 plus :math:`\lambda \big(\sum_m
    \overline{\mathbf{P}_m[u]^2} + \overline{\mathbf{w}^2}\big)` (element
    means over the batch's preference rows and over every weight).

    **The user graph is built here** from the training interactions (the
    original reads :obj:`user_graph_dict.npy`, made by an offline script
    holding a dense :math:`U \times U` matrix): the top :obj:`user_k`
    co-neighbours of every user by count (ties: lower id first) from the
    sparse product :math:`\mathbf{R}\mathbf{R}^{\top}` without its diagonal
    (:func:`~pyg_mmrec.graphs.cooccurrence_topk`, by blocks of rows with
    :obj:`cooccurrence_cap`), once; at every epoch start, a user with fewer
    co-neighbours than :obj:`user_k` has its slots padded by draws from its
    own (growing) list (:func:`~pyg_mmrec.graphs.urn_padded_slots`, as the
    original's :obj:`topk_sample`), so a repeated neighbour weighs more. A
    user with no co-neighbour has no user-graph term (the original points
    it at user 0 with weight 0: the same value). The drawn slots are
    checkpointed (buffers :obj:`user_neighbors`, :obj:`user_counts`).

    Differences from the reference code (``hongyurain/DRAGON``, MMRec's
    ``dragon.py``):

    * Evaluation encodes the graph afresh (the original scores with the
      embeddings of the epoch's last training batch, computed before its
      optimiser step).
    * The user graph is built on the fly, sparse (above), not read from a
      file; the item graph is built from the features each run (the
      original's cache file ignores :obj:`mm_image_weight`).
    * Any number of modalities (FREEDOM's weights generalised: image 0.1,
      the others sharing 0.9); the original needs image and text.
    * No dead parameters (the original registers unused item weights, MLPs,
      projections and trainable feature copies, and draws a dropped-edge
      list it never uses).
    * The item MLP reads the fixed raw features, as the original's forward
      does (its trainable copies receive no gradient).

    Args:
        data (HeteroData): The dataset; it must carry item features.
        embedding_dim (int): :math:`d` per modality. (default: :obj:`64`)
        hidden_dim (int): Hidden width of the item MLPs. (default:
            :obj:`256`)
        num_layers (int): Layers :math:`L` over :math:`\hat{\mathbf{A}}`.
            (default: :obj:`2`)
        num_mm_layers (int): Hops :math:`L_m` over the item graph.
            (default: :obj:`1`)
        knn_k (int): Neighbours per item in :math:`\mathbf{S}`. (default:
            :obj:`10`)
        modality_weights (Mapping[str, float], optional): Weight of each
            modality's item graph. (default:
            :obj:`default_modality_weights` of FREEDOM)
        user_k (int): Slots per user in :math:`\mathbf{G}`. (default:
            :obj:`40`)
        reg_weight (float): :math:`\lambda`. (default: :obj:`1e-3`)
        cooccurrence_cap (int, optional): Build the user graph by blocks of
            rows, each user meeting at most this many others through each
            item (exact when no item has more users). (default:
            :obj:`None`: the exact sparse product at once)
        knn_method (str): :func:`~pyg_mmrec.graphs.knn_graph`'s back-end.
            (default: :obj:`"auto"`)

    Shapes:
        - **encode output:** users :math:`(U, M d)`, items :math:`(I, M d)`
    """
    requires_features = True
    repr_settings = ('embedding_dim', 'num_layers', 'user_k')

    def __init__(self, data: HeteroData, embedding_dim: int = 64,
                 hidden_dim: int = 256, num_layers: int = 2,
                 num_mm_layers: int = 1, knn_k: int = 10,
                 modality_weights: Optional[Mapping[str, float]] = None,
                 user_k: int = 40, reg_weight: float = 1e-3,
                 cooccurrence_cap: Optional[int] = None,
                 knn_method: str = 'auto'):
        super().__init__(data)
        feats = require_features(data, type(self).__name__)
        if user_k < 1:
            raise ValueError(f"user_k must be positive, got {user_k}")
        if num_mm_layers < 0:
            raise ValueError(f"num_mm_layers must be >= 0, got "
                             f"{num_mm_layers}")
        weights = dict(modality_weights or default_modality_weights(feats))
        unknown = set(weights) - set(feats)
        if unknown:
            raise ValueError(f"modality_weights names modalities the dataset "
                             f"lacks: {sorted(unknown)} (has {sorted(feats)})")
        self.modalities: List[str] = list(feats)
        self.embedding_dim, self.num_layers = embedding_dim, num_layers
        self.num_mm_layers, self.user_k = num_mm_layers, user_k
        self.reg_weight, self.modality_weights = reg_weight, weights
        self.features = feature_tables(feats, False)
        self.preferences = torch.nn.ParameterDict({
            m: torch.nn.Parameter(torch.empty(self.num_users, embedding_dim))
            for m in self.modalities})
        self.item_mlps = torch.nn.ModuleDict({
            m: torch.nn.Sequential(torch.nn.Linear(x.size(1), hidden_dim),
                                   torch.nn.LeakyReLU(0.01),
                                   torch.nn.Linear(hidden_dim, embedding_dim))
            for m, x in feats.items()})
        #: :math:`w_{u,m}` :obj:`[U, M]`.
        self.user_modality_weight = torch.nn.Parameter(
            torch.empty(self.num_users, len(self.modalities)))
        self.encoder = LightGCNEncoder(num_layers, combine='sum',
                                       symmetric=True)
        self.register_training_graph(data)
        item_graph = mixed_knn_adjacency(feats, knn_k, weights, knn_method)
        self.register_buffer('item_graph', item_graph, persistent=False)
        self.register_buffer('item_graph_t', csr_transpose(item_graph),
                             persistent=False)
        ranked, counts = cooccurrence_topk(train_graph(data), 'user', user_k,
                                           cap=cooccurrence_cap)
        self.register_buffer('ranked_users', ranked, persistent=False)
        self.register_buffer('ranked_counts', counts, persistent=False)
        self.register_buffer('user_neighbors', torch.empty(
            self.num_users, user_k, dtype=torch.long))
        self.register_buffer('user_counts', torch.empty(
            self.num_users, user_k, dtype=counts.dtype))
        self._user_graph: Optional[Tuple[Tensor, Tensor]] = None
        self.register_load_state_dict_post_hook(
            lambda module, _: setattr(module, '_user_graph', None))
        self.reset_parameters()
        self.sample_user_graph()

    def reset_parameters(self):
        for table in self.preferences.values():
            torch.nn.init.xavier_normal_(table)
        for mlp in self.item_mlps.values():
            for lin in mlp:
                if isinstance(lin, torch.nn.Linear):
                    lin.reset_parameters()
        with torch.no_grad():
            w = torch.nn.init.xavier_normal_(torch.empty(
                self.num_users, len(self.modalities), 1))
            self.user_modality_weight.copy_(torch.softmax(w, dim=1)[..., 0])

    @torch.no_grad()
    def sample_user_graph(self) -> None:
        r"""Draws every user's :obj:`user_k` slots (the padding of users
        with fewer co-neighbours, :func:`~pyg_mmrec.graphs.urn_padded_slots`;
        called at every epoch start)."""
        neighbors, counts = urn_padded_slots(
            self.ranked_users, self.ranked_counts, self.num_users,
            self.user_k)
        self.user_neighbors.copy_(neighbors)
        self.user_counts.copy_(counts)
        self._user_graph = None

    def on_epoch_start(self, epoch: int) -> None:
        self.sample_user_graph()

    def user_graph(self) -> Tuple[Tensor, Tensor]:
        r"""The user graph :math:`\mathbf{G}` :obj:`[U, U]` of the drawn
        slots (softmax of each user's slot counts, repeated slots summed)
        and its transpose."""
        if self._user_graph is None:
            has = self.user_neighbors[:, 0] >= 0
            weight = torch.softmax(self.user_counts[has], dim=1)
            row = has.nonzero().view(-1).repeat_interleave(self.user_k)
            adj = to_sparse_csr(
                torch.stack([row, self.user_neighbors[has].reshape(-1)]),
                weight.reshape(-1).to(torch.get_default_dtype()),
                (self.num_users, self.num_users))
            self._user_graph = (adj, csr_transpose(adj))
        return self._user_graph

    def modality_views(self) -> Dict[str, Tensor]:
        r""":math:`\mathbf{R}_m` :obj:`[U + I, d]` of every modality."""
        out = {}
        for m in self.modalities:
            item = self.item_mlps[m](getattr(self.features, m))
            x = F.normalize(torch.cat([self.preferences[m], item]), dim=1)
            out[m] = self.encoder(x, self.adj)
        return out

    def encode(self, subgraph=None) -> Tuple[Tensor, Tensor]:
        views = self.modality_views()
        num_users = self.num_users
        user = torch.cat([self.user_modality_weight[:, j, None]
                          * views[m][:num_users]
                          for j, m in enumerate(self.modalities)], dim=1)
        item = torch.cat([views[m][num_users:] for m in self.modalities],
                         dim=1)
        smoothed = item
        for _ in range(self.num_mm_layers):
            smoothed = sparse_mm(self.item_graph, smoothed, self.item_graph_t)
        graph, graph_t = self.user_graph()
        return user + sparse_mm(graph, user, graph_t), item + smoothed

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        user_emb, item_emb = self.encode()
        user, pos, neg = batch.node_index()
        u = user_emb[user]
        bpr = bpr_loss((u * item_emb[pos]).sum(-1),
                       (u * item_emb[neg]).sum(-1)) / math.log(2.0)
        reg = self.user_modality_weight.pow(2).mean()
        for table in self.preferences.values():
            reg = reg + table[user].pow(2).mean()
        return {'bpr': bpr, 'reg': self.reg_weight * reg}
