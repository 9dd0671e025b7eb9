"""LGMRec."""
import logging
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import require_features
from ..graphs import csr_transpose, user_item_matrix
from ..loader import BPRBatch, Subgraph
from ..nn import GumbelHypergraph, LightGCNEncoder, bpr_loss, sparse_mm
from ..nn.features import feature_tables
from ..nn.view_contrast import view_pair_info_nce
from .base import Recommender
from .registry import register_model

log = logging.getLogger(__name__)

#: Added to the degrees (of the adjacency and of the users' item means), as
#: the original.
DEGREE_EPS = 1e-7


class LGMRecViews(NamedTuple):
    r"""The representations of one LGMRec pass, users first."""
    #: :math:`\mathbf{Z}` :obj:`[U + I, d]`.
    final: Tensor
    #: :math:`(\mathbf{g}_U^m, \mathbf{g}_I^m)` of every modality, in
    #: order (raw hypergraph outputs).
    hyper: List[Tuple[Tensor, Tensor]]


@register_model('lgmrec')
class LGMRec(Recommender):
    r"""LGMRec from `"LGMRec: Local and Global Graph Learning for
    Multimodal Recommendation" <https://arxiv.org/abs/2312.16400>`_
    (AAAI 2024): decoupled local collaborative and modality embeddings
    plus global interests from a learned hypergraph.

    With :math:`\hat{\mathbf{A}}` the symmetrically normalised training
    graph (no self-loops), :math:`\mathbf{R}` the binary user-item matrix,
    :math:`\mathbf{D}_U` the user degrees and the frozen item features
    :math:`\mathbf{X}_m`:

    .. math::
        \mathbf{C} &= \frac{1}{L_{ui} + 1} \sum_{l=0}^{L_{ui}}
        \hat{\mathbf{A}}^l [\mathbf{E}_U; \mathbf{E}_I], \qquad
        \mathbf{f}_m = \mathbf{X}_m \mathbf{W}_m, \qquad
        \mathbf{F}_m = \hat{\mathbf{A}}^{L_{mm}} [\mathbf{D}_U^{-1}
        \mathbf{R} \mathbf{f}_m;\; \mathbf{f}_m] \\
        [\mathbf{g}_U^m; \mathbf{g}_I^m] &= \mathrm{HGNN}_m(\mathbf{C}_I),
        \qquad \mathbf{Z} = \mathbf{C} + \textstyle\sum_m
        \mathrm{norm}(\mathbf{F}_m) + \alpha\, \mathrm{norm}\big(\sum_m
        [\mathbf{g}_U^m; \mathbf{g}_I^m]\big)

    (collaborative graph embedding: LightGCN, mean over layers; modality
    graph embedding: users start as the mean of their items' features, the
    last layer only; :math:`\mathrm{HGNN}_m` the
    :class:`~pyg_mmrec.nn.GumbelHypergraph` of modality :math:`m`, whose
    hyperedge assignments :math:`\mathbf{X}_m \mathbf{Q}_m` and
    :math:`\mathbf{R} \mathbf{X}_m \mathbf{Q}_m` are Gumbel-softmaxed at
    :math:`\tau` with dropout :math:`1 - \mathrm{keep\_rate}`). Scores are
    :math:`\langle \mathbf{z}_u, \mathbf{z}_i \rangle`. On a batch of
    :math:`B` triples :math:`(u, p, n)`:

    .. math::
        \mathcal{L} = \mathcal{L}_{BPR}(\mathbf{Z}) + \lambda_r
        \frac{\lVert \mathbf{Z}_u \rVert_F + \lVert \mathbf{Z}_p \rVert_F
        + \lVert \mathbf{Z}_n \rVert_F}{B} + \lambda_c \sum_{a < b}
        \Big(\sum_{u} \ell_\tau(\mathbf{g}_U^a, \mathbf{g}_U^b; u) +
        \sum_{p} \ell_\tau(\mathbf{g}_I^a, \mathbf{g}_I^b; p)\Big),

    with :math:`\ell_\tau(\mathbf{x}, \mathbf{y}; b) = -\log
    \mathrm{softmax}_j(\cos(\mathbf{x}_b, \mathbf{y}_j) / \tau)_b` over
    **all** users (items) :math:`j`, summed over the batch's rows
    (duplicates included) and over the pairs of modalities in the
    dataset's order (with image and text: the original's visual-anchored
    contrast). Every forward draws fresh Gumbel noise.

    Differences from the reference code (``georgeguo-cn/LGMRec``, MMRec's
    ``lgmrec.py``):

    * **Evaluation is deterministic** by default (the assignments are the
      plain :math:`\mathrm{softmax}_\tau` of the logits); the original
      draws Gumbel noise at evaluation too, once per evaluation batch of
      users, so its scores are random. :obj:`faithful=True` draws the
      noise at evaluation as well, once per evaluation (this library
      encodes once per evaluation, not once per user batch).
    * Any number of modalities (the original needs exactly image and
      text): the contrast runs over every pair :math:`a < b`; with one
      modality the :obj:`"cl"` term is a constant zero (a warning at
      construction says so).
    * :obj:`temperature` is a setting (hard-coded 0.2 there).
    * The contrast is the exact chunked InfoNCE
      (:func:`~pyg_mmrec.nn.info_nce`), without the :math:`B \times U`
      and :math:`B \times I` logit matrices (the same sum, up to
      floating-point rounding).
    * The Gumbel noise comes from PyTorch's global random stream (which
      the trainer seeds), with :math:`u` clamped away from 0 and 1.
    * Settings are checked at construction (:obj:`keep_rate` in
      :math:`(0, 1]`, at least one hypergraph layer and one hyperedge).

    The defaults are the original's Baby settings; its per-dataset files
    set for Sports and Clothing :obj:`num_ui_layers` 4 / 2,
    :obj:`num_hyper_layers` 1 / 2, :obj:`num_hyperedges` 4 / 64,
    :obj:`keep_rate` 0.4 / 0.2 and :obj:`alpha` 0.6 / 0.2, the rest as
    Baby's (its Sports log ran :obj:`num_ui_layers` 2 and
    :obj:`num_hyper_layers` 4).

    The hyperedge assignment of a user reads all its items, so the model
    encodes the whole training graph only (no sampled subgraphs).

    Args:
        data (HeteroData): The dataset; it must carry item features.
        embedding_dim (int): :math:`d`. (default: :obj:`64`)
        num_ui_layers (int): :math:`L_{ui}` (:obj:`n_ui_layers`).
            (default: :obj:`2`)
        num_mm_layers (int): :math:`L_{mm}` (:obj:`n_mm_layers`).
            (default: :obj:`2`)
        num_hyper_layers (int): Hypergraph convolutions
            (:obj:`n_hyper_layer`). (default: :obj:`1`)
        num_hyperedges (int): :math:`H` (:obj:`hyper_num`).
            (default: :obj:`4`)
        keep_rate (float): :math:`1 -` the assignments' dropout.
            (default: :obj:`0.5`)
        alpha (float): :math:`\alpha`. (default: :obj:`0.3`)
        cl_weight (float): :math:`\lambda_c`. (default: :obj:`1e-4`)
        reg_weight (float): :math:`\lambda_r`. (default: :obj:`1e-6`)
        temperature (float): :math:`\tau` of the Gumbel-softmax and the
            contrast. (default: :obj:`0.2`)
        faithful (bool): Draw the Gumbel noise at evaluation too, as the
            original. (default: :obj:`False`)
    """
    requires_features = True
    supports_subgraph = False
    repr_settings = ('embedding_dim', 'num_ui_layers', 'num_mm_layers',
                     'num_hyper_layers', 'num_hyperedges', 'faithful')

    def __init__(self, data: HeteroData, embedding_dim: int = 64,
                 num_ui_layers: int = 2, num_mm_layers: int = 2,
                 num_hyper_layers: int = 1, num_hyperedges: int = 4,
                 keep_rate: float = 0.5, alpha: float = 0.3,
                 cl_weight: float = 1e-4, reg_weight: float = 1e-6,
                 temperature: float = 0.2, faithful: bool = False):
        super().__init__(data)
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
        for name, value, least in (('num_ui_layers', num_ui_layers, 0),
                                   ('num_mm_layers', num_mm_layers, 0),
                                   ('num_hyper_layers', num_hyper_layers, 1),
                                   ('num_hyperedges', num_hyperedges, 1)):
            if value < least:
                raise ValueError(f"{name} must be >= {least}, got {value}")
        feats = require_features(data, type(self).__name__)
        self.modalities: List[str] = list(feats)
        self.embedding_dim = embedding_dim
        self.num_ui_layers, self.num_mm_layers = num_ui_layers, num_mm_layers
        self.num_hyper_layers = num_hyper_layers
        self.num_hyperedges, self.keep_rate = num_hyperedges, keep_rate
        self.alpha, self.cl_weight = alpha, cl_weight
        self.reg_weight, self.temperature = reg_weight, temperature
        self.faithful = faithful
        self.user_embedding = torch.nn.Embedding(self.num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(self.num_items, embedding_dim)
        self.collaborative_encoder = LightGCNEncoder(
            num_ui_layers, combine='mean', symmetric=True)
        self.modality_encoder = LightGCNEncoder(
            num_mm_layers, combine='last', symmetric=True)
        edge_index = self.register_training_graph(data, eps=DEGREE_EPS)
        interactions = user_item_matrix(edge_index, self.num_users,
                                        self.num_items)
        self.register_buffer('interactions', interactions, persistent=False)
        self.register_buffer('interactions_t', csr_transpose(interactions),
                             persistent=False)
        self.features = feature_tables(feats, False)
        self.projections = torch.nn.ModuleDict({
            m: torch.nn.Linear(x.size(1), embedding_dim, bias=False)
            for m, x in feats.items()})
        self.hypergraphs = torch.nn.ModuleDict({
            m: GumbelHypergraph(x.size(1), num_hyperedges, num_hyper_layers,
                                temperature, dropout=1.0 - keep_rate)
            for m, x in feats.items()})
        if cl_weight > 0 and len(self.modalities) < 2:
            log.warning(
                "LGMRec contrasts the hypergraph embeddings of pairs of "
                "modalities, and dataset '%s' has one (%s): its 'cl' term "
                "is 0", getattr(data, 'name', '?'), self.modalities[0])
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        for m in self.modalities:
            torch.nn.init.xavier_uniform_(self.projections[m].weight)
            self.hypergraphs[m].reset_parameters()

    def collaborative(self) -> Tensor:
        r""":math:`\mathbf{C}` :obj:`[U + I, d]`: LightGCN on the ID
        embeddings, mean over layers :math:`0..L_{ui}`."""
        e = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        return self.collaborative_encoder(e, self.adj)

    def user_item_mean(self, item_rows: Tensor) -> Tensor:
        r""":math:`\mathbf{D}_U^{-1} \mathbf{R}\, \mathbf{x}`: the mean of
        each user's items' rows :obj:`[I, F] -> [U, F]`."""
        total = sparse_mm(self.interactions, item_rows, self.interactions_t)
        return total / (self.user_degree + DEGREE_EPS).unsqueeze(-1)

    def modality_view(self, modality: str) -> Tensor:
        r""":math:`\mathbf{F}_m` :obj:`[U + I, d]`: the projected features
        (users: their items' mean) after :math:`L_{mm}` hops, last layer
        only."""
        item = self.projections[modality](getattr(self.features, modality))
        return self.modality_encoder(
            torch.cat([self.user_item_mean(item), item]), self.adj)

    def hypergraph_view(self, modality: str, collaborative_items: Tensor
                        ) -> Tuple[Tensor, Tensor]:
        r""":math:`(\mathbf{g}_U^m, \mathbf{g}_I^m)`: the hypergraph
        convolution of the collaborative item embeddings (Gumbel noise in
        training mode, and in evaluation mode when :obj:`faithful`)."""
        return self.hypergraphs[modality](
            getattr(self.features, modality), collaborative_items,
            self.interactions, self.interactions_t,
            noise=self.training or self.faithful)

    def propagate(self) -> LGMRecViews:
        r"""The final representations and the hypergraph outputs of every
        user and item."""
        collaborative = self.collaborative()
        local = collaborative
        for m in self.modalities:
            local = local + F.normalize(self.modality_view(m), dim=-1)
        items = collaborative[self.num_users:]
        hyper = [self.hypergraph_view(m, items) for m in self.modalities]
        global_view = torch.cat([sum(u for u, _ in hyper),
                                 sum(i for _, i in hyper)])
        final = local + self.alpha * F.normalize(global_view, dim=-1)
        return LGMRecViews(final, hyper)

    def encode(self, subgraph: Optional[Subgraph] = None
               ) -> Tuple[Tensor, Tensor]:
        final = self.propagate().final
        return final[:self.num_users], final[self.num_users:]

    def hyperedge_contrast(self, hyper: List[Tuple[Tensor, Tensor]],
                           users: Tensor, pos: Tensor) -> Tensor:
        r"""The summed contrast of the hypergraph outputs of every pair of
        modalities, anchored on the batch's users and positive items
        (zero with one modality)."""
        loss = view_pair_info_nce(hyper, users, pos, self.temperature)
        if loss is None:
            return hyper[0][0].new_zeros(())
        # info_nce averages over the anchors; the original sums (users and
        # positives are both the batch's B rows).
        return loss * users.numel()

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        final, hyper = self.propagate()
        user, pos, neg = batch.node_index()
        z_u = final[user]
        z_p = final[self.num_users + pos]
        z_n = final[self.num_users + neg]
        reg = (z_u.norm() + z_p.norm() + z_n.norm()) / user.numel()
        cl = (self.hyperedge_contrast(hyper, user, pos) if self.cl_weight
              else final.new_zeros(()))
        return {
            'bpr': bpr_loss((z_u * z_p).sum(-1), (z_u * z_n).sum(-1)),
            'reg': self.reg_weight * reg,
            'cl': self.cl_weight * cl}
