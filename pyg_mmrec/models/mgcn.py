"""MGCN."""
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import require_features
from ..graphs import (
    csr_row_block,
    csr_rows_mm,
    csr_transpose,
    knn_adjacency,
)
from ..loader import BPRBatch, Subgraph
from ..nn import (
    BehaviourAwareFuser,
    LightGCNEncoder,
    bpr_loss,
    info_nce,
    l2_reg,
    sigmoid_gate,
    sparse_mm,
)
from ..nn.features import feature_tables, per_modality
from .base import Recommender
from .registry import register_model


@register_model('mgcn')
class MGCN(Recommender):
    r"""MGCN from `"Multi-View Graph Convolutional Network for Multimedia
    Recommendation" <https://arxiv.org/abs/2308.03588>`_ (MM 2023).

    Three views. The ID view :math:`\mathbf{C}` is LightGCN over the
    symmetrically normalised training graph :math:`\hat{\mathbf{A}}` (no
    self-loops), averaged over layers :math:`0..L`. Per modality
    :math:`m`, the item ID embeddings are "purified" by a gate of the
    projected feature :math:`\mathbf{f}_m = \mathbf{W}_m \mathbf{X}_m +
    \mathbf{b}_m`, smoothed over the frozen similarity-weighted kNN graph
    :math:`\mathbf{S}_m` of the raw features (:math:`L_m` hops) and pushed
    to the users through the user-item block :math:`\mathbf{R}` of
    :math:`\hat{\mathbf{A}}`:

    .. math::
        \bar{\mathbf{E}}_m = \mathbf{E}_I \odot \sigma(\mathbf{G}_m
        \mathbf{f}_m + \mathbf{g}_m), \quad
        \mathbf{H}_m = [\mathbf{R}\, \mathbf{S}_m^{L_m}
        \bar{\mathbf{E}}_m;\; \mathbf{S}_m^{L_m} \bar{\mathbf{E}}_m].

    The behaviour-aware fuser (:class:`~pyg_mmrec.nn.BehaviourAwareFuser`)
    gives the side view :math:`\mathbf{S}` (common part plus the specific
    parts gated by preferences of :math:`\mathbf{C}`, over :math:`M + 1`),
    and :math:`\mathbf{Z} = \mathbf{C} + \mathbf{S}` scores
    :math:`\langle \mathbf{z}_u, \mathbf{z}_i \rangle`. On a batch of
    triples:

    .. math::
        \mathcal{L} = \mathcal{L}_{BPR}(\mathbf{Z}) + \lambda_r
        \frac{1}{2B}\sum_b (\lVert \mathbf{z}_u \rVert^2 + \lVert
        \mathbf{z}_p \rVert^2 + \lVert \mathbf{z}_n \rVert^2) + \lambda_c
        \big(\mathrm{NCE}_\tau(\mathbf{S}_p, \mathbf{C}_p) +
        \mathrm{NCE}_\tau(\mathbf{S}_u, \mathbf{C}_u)\big)

    with in-batch InfoNCE (:func:`~pyg_mmrec.nn.info_nce`, the
    :math:`B \times B` softmax includes the positive and a repeated row
    counts as a negative, as the original). The original decays the
    learning rate by :math:`0.96^{e/50}`: the trainer's
    :obj:`lr_decay: [0.96, 50]` (the dataset configurations set it).

    Differences from the reference code (``demonph10/MGCN``, MMRec's
    ``mgcn.py``):

    * Any number of modalities (the original needs exactly image and
      text); the fuser divides by :math:`M + 1` (3 there).
    * The regulariser divides by the batch's size (the original by the
      configured one, also for the last, smaller batch).
    * :obj:`temperature` is a setting (hard-coded 0.2 there, its
      :obj:`tau` 0.5 unused); :obj:`train_features=False` keeps the raw
      feature tables fixed (the original trains them; the graphs are
      built once from the raw features either way).
    * The kNN graphs are built in row chunks (no :math:`I \times I`
      similarity matrix).
    * Mini-batch training (:obj:`sampler="neighbor"`, ours): the ID view
      on the sampled subgraph with the full graph's degrees, the
      subgraph's items' rows of :math:`\mathbf{S}_m` read over every item
      they reach (exact), :math:`\mathbf{R}` restricted to the subgraph's
      edges: the whole graph as a subgraph gives the full-graph losses.

    Args:
        data (HeteroData): The dataset; it must carry item features.
        embedding_dim (int): :math:`d`. (default: :obj:`64`)
        num_ui_layers (int): LightGCN layers :math:`L`. (default: :obj:`2`)
        num_mm_layers (int): Item-graph hops :math:`L_m`. (default:
            :obj:`1`)
        knn_k (int or dict): Neighbours per item in :math:`\mathbf{S}_m`
            (one for all modalities, or one per modality). (default:
            :obj:`10`)
        reg_weight (float): :math:`\lambda_r`. (default: :obj:`1e-4`)
        cl_weight (float): :math:`\lambda_c` (:obj:`cl_loss`). (default:
            :obj:`0.01`)
        temperature (float): :math:`\tau`. (default: :obj:`0.2`)
        train_features (bool): Train the raw feature tables. (default:
            :obj:`True`)
        knn_method (str): :func:`~pyg_mmrec.graphs.knn_graph`'s back-end.
            (default: :obj:`"auto"`)
    """
    requires_features = True
    supports_subgraph = True
    repr_settings = ('embedding_dim', 'num_ui_layers', 'num_mm_layers')

    def __init__(self, data: HeteroData, embedding_dim: int = 64,
                 num_ui_layers: int = 2, num_mm_layers: int = 1,
                 knn_k: Union[int, Mapping[str, int]] = 10,
                 reg_weight: float = 1e-4, cl_weight: float = 0.01,
                 temperature: float = 0.2, train_features: bool = True,
                 knn_method: str = 'auto'):
        super().__init__(data)
        if num_mm_layers < 0:
            raise ValueError(f"num_mm_layers must be >= 0, got "
                             f"{num_mm_layers}")
        feats = require_features(data, type(self).__name__)
        self.modalities: List[str] = list(feats)
        self.embedding_dim, self.num_ui_layers = embedding_dim, num_ui_layers
        self.num_mm_layers, self.reg_weight = num_mm_layers, reg_weight
        self.cl_weight, self.temperature = cl_weight, temperature
        self.train_features = train_features
        self.user_embedding = torch.nn.Embedding(self.num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(self.num_items, embedding_dim)
        self.encoder = LightGCNEncoder(num_ui_layers, combine='mean',
                                       symmetric=True)
        self.register_training_graph(data)
        self.features = feature_tables(feats, train_features)
        self.projections = torch.nn.ModuleDict({
            m: torch.nn.Linear(x.size(1), embedding_dim)
            for m, x in feats.items()})
        self.knn_k = per_modality(knn_k, self.modalities, 'knn_k')
        graphs = {m: knn_adjacency(x, self.knn_k[m], weighting='similarity',
                                   normalization='sym', degree='weighted',
                                   method=knn_method)
                  for m, x in feats.items()}
        graphs.update(self.extra_graphs(graphs))
        #: The item-graph views (each modality, then any the subclass adds).
        self.views: List[str] = list(graphs)
        for view, graph in graphs.items():
            self.register_buffer(f'graph_{view}', graph, persistent=False)
            self.register_buffer(f'graph_{view}_t', csr_transpose(graph),
                                 persistent=False)
        self.purifiers = torch.nn.ModuleDict({
            v: sigmoid_gate(embedding_dim) for v in self.views})
        self.fuser = self.build_fuser()
        MGCN.reset_parameters(self)

    # Hooks of the MGCN family (SMORE overrides them) ---------------------
    def extra_graphs(self, graphs: Dict[str, Tensor]) -> Dict[str, Tensor]:
        r"""Item graphs of views beyond the modalities (none)."""
        return {}

    def build_fuser(self) -> torch.nn.Module:
        r"""The module mapping (views :obj:`[V, N, d]`, ID view
        :obj:`[N, d]`) to the side view."""
        return BehaviourAwareFuser(self.embedding_dim, len(self.views))

    def view_feature(self, view: str, items: Optional[Tensor]) -> Tensor:
        r"""The feature that gates :obj:`view`'s item embeddings:
        :math:`\mathbf{f}_m` of :obj:`items` (all items when
        :obj:`None`)."""
        return self.projected(view, items)

    # ---------------------------------------------------------------------
    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        for module in (self.projections, self.purifiers, self.fuser):
            for lin in module.modules():
                if isinstance(lin, torch.nn.Linear):
                    lin.reset_parameters()

    def projected(self, modality: str, items: Optional[Tensor]) -> Tensor:
        r""":math:`\mathbf{f}_m` of :obj:`items` (all items when
        :obj:`None`)."""
        x = getattr(self.features, modality)
        return self.projections[modality](
            x if items is None else x.index_select(0, items))

    def purified(self, view: str, items: Optional[Tensor]) -> Tensor:
        r""":math:`\bar{\mathbf{E}}_m` of :obj:`items` (all when
        :obj:`None`)."""
        e = (self.item_embedding.weight if items is None
             else self.item_embedding(items))
        return e * self.purifiers[view](self.view_feature(view, items))

    def item_view(self, view: str, items: Optional[Tensor] = None) -> Tensor:
        r""":math:`\mathbf{S}_m^{L_m} \bar{\mathbf{E}}_m` of every item, or
        of :obj:`items` (one hop: their rows of :math:`\mathbf{S}_m` over
        the items they read only)."""
        graph = getattr(self, f'graph_{view}')
        graph_t = getattr(self, f'graph_{view}_t')
        if self.num_mm_layers == 0:
            return self.purified(view, items)
        if items is not None and self.num_mm_layers == 1:
            block, block_t, columns = csr_row_block(graph, items)
            return sparse_mm(block, self.purified(view, columns), block_t)
        h = self.purified(view, None)
        for _ in range(self.num_mm_layers - 1):
            h = sparse_mm(graph, h, graph_t)
        if items is None:
            return sparse_mm(graph, h, graph_t)
        return csr_rows_mm(graph, items, h)

    def propagate(self, subgraph: Optional[Subgraph] = None
                  ) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The final view :math:`\mathbf{Z}`, the side view
        :math:`\mathbf{S}` and the ID view :math:`\mathbf{C}`, each
        :obj:`[U + I, d]` (users first), or of :obj:`subgraph`'s nodes."""
        if subgraph is None:
            e_u, e_i = self.user_embedding.weight, self.item_embedding.weight
            items = None
        else:
            e_u = self.user_embedding(subgraph.user_id)
            e_i = self.item_embedding(subgraph.item_id)
            items = subgraph.item_id
        adj = self.training_adjacency(subgraph)
        num_users = e_u.size(0)
        content = self.encoder(torch.cat([e_u, e_i]), adj)
        hidden = []
        for view in self.views:
            item = self.item_view(view, items)
            # R item: the user rows of one hop from the items alone.
            user = sparse_mm(adj, torch.cat([item.new_zeros(
                num_users, item.size(1)), item]), symmetric=True)
            hidden.append(torch.cat([user[:num_users], item]))
        side = self.fuser(torch.stack(hidden), content)
        return content + side, side, content

    def encode(self, subgraph: Optional[Subgraph] = None
               ) -> Tuple[Tensor, Tensor]:
        final = self.propagate(subgraph)[0]
        num_users = (self.num_users if subgraph is None
                     else subgraph.num_users)
        return final[:num_users], final[num_users:]

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        final, side, content = self.propagate(batch.subgraph)
        num_users = (self.num_users if batch.subgraph is None
                     else batch.subgraph.num_users)
        user, pos, neg = batch.node_index()
        pos, neg = pos + num_users, neg + num_users
        z_u, z_p, z_n = final[user], final[pos], final[neg]
        nce = lambda a, b: info_nce(a, b, self.temperature)  # noqa: E731
        return {
            'bpr': bpr_loss((z_u * z_p).sum(-1), (z_u * z_n).sum(-1)),
            'reg': self.reg_weight * l2_reg(z_u, z_p, z_n),
            'cl': self.cl_weight * (nce(side[pos], content[pos])
                                    + nce(side[user], content[user]))}
