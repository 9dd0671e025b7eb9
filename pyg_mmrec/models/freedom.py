"""FREEDOM."""
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import require_features
from ..graphs import (
    bipartite_adjacency,
    bipartite_degrees,
    csr_rows_mm,
    csr_transpose,
    degree_sensitive_edges,
    mixed_knn_adjacency,
    pruning_weights,
    subgraph_adjacency,
)
from ..graphs.pairs import PairIndex
from ..graphs.receptive import receptive_field
from ..loader import BPRBatch, NeighborSource, Subgraph
from ..nn import LightGCNEncoder, ModalityFeatures, sparse_mm
from ..nn.losses import bpr_loss
from .base import Recommender
from .registry import register_model


def default_modality_weights(modalities) -> Dict[str, float]:
    r"""FREEDOM's weighting generalised to any set of modalities: image gets
    :obj:`0.1` (the original's :obj:`mm_image_weight`) and the others share
    the remaining :obj:`0.9` equally; without image, equal weights."""
    modalities = list(modalities)
    if len(modalities) == 1:
        return {modalities[0]: 1.0}
    if 'image' not in modalities:
        return {m: 1.0 / len(modalities) for m in modalities}
    rest = [m for m in modalities if m != 'image']
    return {'image': 0.1, **{m: 0.9 / len(rest) for m in rest}}


@register_model('freedom')
class FREEDOM(Recommender):
    r"""FREEDOM from `"A Tale of Two Graphs: Freezing and Denoising Graph
    Structures for Multimodal Recommendation"
    <https://arxiv.org/abs/2211.06924>`_.

    A frozen item-item graph :math:`\mathbf{S} = \sum_m w_m \mathbf{S}_m`
    (per-modality cosine kNN graphs on the raw features, binary, entries
    :math:`1/k`) smooths the item ID embeddings, and a LightGCN runs on a
    user-item graph whose edges are pruned every epoch with probability
    favouring low-degree endpoints (degree-sensitive edge dropout):

    .. math::
        \mathbf{h} = \mathbf{S}^{L_m} \mathbf{E}_i, \qquad
        [\mathbf{e}_u; \mathbf{e}_i] = \mathrm{LightGCN}_{L_{ui}}
        ([\mathbf{E}_u; \mathbf{E}_i], \tilde{\mathbf{A}}), \qquad
        s(u, i) = \langle \mathbf{e}_u, \mathbf{e}_i + \mathbf{h}_i \rangle

    The loss is BPR on these scores plus :obj:`reg_weight` times a BPR loss
    per modality between :math:`\mathbf{e}_u` and the item's projected
    features.

    Differences from the original (MMRec): all modalities present are used
    (not only image and text; see :obj:`default_modality_weights`); the raw
    feature tables are frozen (the original keeps them trainable although
    they only enter through the :obj:`reg_weight` terms), which saves the
    Adam state of a :obj:`[I, 4096]` table; edge pruning draws with the
    Gumbel-top-k trick, the same distribution as :obj:`torch.multinomial`
    without replacement; the feature projections have no bias (it adds the
    same :math:`\langle \mathbf{e}_u, \mathbf{b} \rangle` to positive and
    negative scores, so it cancels in BPR and never receives a gradient).

    On a sampled :class:`~pyg_mmrec.loader.Subgraph` (mini-batch training)
    the neighbourhoods are sampled from the edges this epoch's pruning
    kept (:meth:`neighbor_source`), the LightGCN runs on the subgraph's
    kept edges with the pruned graph's degrees, and the item-item hops are
    exact:
    the last hop reads only the subgraph items' rows of
    :math:`\mathbf{S}` (:math:`k` neighbours each, from the whole item
    table; earlier hops, if any, run on all items).

    Args:
        data (HeteroData): The dataset; it must carry item features.
        embedding_dim (int): ID embedding size. (default: :obj:`64`)
        knn_k (int): Neighbours per item in the modality graphs (the item
            itself included). (default: :obj:`10`)
        modality_weights (Mapping[str, float], optional): Weight of each
            modality graph. (default: :obj:`default_modality_weights`)
        num_mm_layers (int): Hops on the item-item graph. (default: :obj:`1`)
        num_ui_layers (int): LightGCN layers. (default: :obj:`2`)
        dropout (float): Share of training edges pruned each epoch.
            (default: :obj:`0.8`)
        reg_weight (float): Weight of the modality BPR terms; the original
            searches :obj:`{0, 1e-5, 1e-4, 1e-3}`. (default: :obj:`1e-4`)
        knn_method (str): The kNN search of the modality graphs
            (:func:`~pyg_mmrec.graphs.knn_graph`'s :obj:`method`):
            :obj:`"ivf"` for an approximate inverted-file search, whose cost
            grows as :math:`n^{3/2}` instead of :math:`n^2` (hundreds of
            thousands of items). (default: :obj:`"auto"`, exact)
    """
    requires_features = True
    supports_subgraph = True
    #: The projection of the item features (see
    #: :class:`~pyg_mmrec.nn.ModalityFeatures`): bias-free here.
    feature_projection: str = 'matrix'

    repr_settings = ('modalities', 'embedding_dim', 'knn_k')

    def __init__(
        self,
        data: HeteroData,
        embedding_dim: int = 64,
        knn_k: int = 10,
        modality_weights: Optional[Mapping[str, float]] = None,
        num_mm_layers: int = 1,
        num_ui_layers: int = 2,
        dropout: float = 0.8,
        reg_weight: float = 1e-4,
        knn_method: str = 'auto',
    ):
        super().__init__(data)
        feats = require_features(data, type(self).__name__)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        weights = dict(modality_weights or default_modality_weights(feats))
        unknown = set(weights) - set(feats)
        if unknown:
            raise ValueError(f"modality_weights names modalities the dataset "
                             f"lacks: {sorted(unknown)} (has {sorted(feats)})")
        self.embedding_dim, self.knn_k = embedding_dim, knn_k
        self.modality_weights = weights
        self.num_mm_layers, self.dropout = num_mm_layers, dropout
        self.reg_weight = reg_weight

        self.user_embedding = torch.nn.Embedding(self.num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(self.num_items, embedding_dim)
        #: The item features and their projections.
        self.features = ModalityFeatures(
            feats, embedding_dim, projection=self.feature_projection,
            weight_init='xavier_normal')
        self.encoder = LightGCNEncoder(num_ui_layers, combine='mean',
                                       symmetric=True)

        item_graph = mixed_knn_adjacency(feats, knn_k, weights, knn_method)
        self.register_buffer('item_graph', item_graph, persistent=False)
        # kNN graphs are not symmetric: keep the transpose for the backward.
        self.register_buffer('item_graph_t', csr_transpose(item_graph),
                             persistent=False)
        edge_index = self.register_training_graph(data)
        self.register_buffer('train_edge_index', edge_index, persistent=False)
        self.register_buffer('prune_weight', pruning_weights(
            edge_index, self.num_users, self.num_items), persistent=False)
        self.register_buffer('train_adj', self.adj, persistent=False)
        # This epoch's kept edges (None: all kept) and the degrees that
        # normalise a subgraph: the full graph's, or the pruned graph's.
        self.kept_pairs: Optional[PairIndex] = None
        self.kept_edge_index: Optional[Tensor] = None
        self.kept_degrees: Optional[Tuple[Tensor, Tensor]] = None
        # FREEDOM's own parameters (not virtual: a subclass resets what it
        # adds once it has built it).
        FREEDOM.reset_parameters(self)

    @property
    def modalities(self) -> List[str]:
        r"""The item modalities, in the dataset's order."""
        return self.features.modalities

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        self.features.reset_parameters()

    def on_epoch_start(self, epoch: int) -> None:
        if self.dropout > 0:
            kept = degree_sensitive_edges(
                self.train_edge_index, self.num_users, self.num_items,
                keep_ratio=1.0 - self.dropout, edge_weight=self.prune_weight)
            self.train_adj = bipartite_adjacency(kept, self.num_users,
                                                 self.num_items)
            self.kept_edge_index = kept
            self.kept_pairs = PairIndex(kept, self.num_users, self.num_items)
            self.kept_degrees = bipartite_degrees(kept, self.num_users,
                                                  self.num_items)

    def sampling_edges(self) -> Optional[Tensor]:
        r"""The (user, item) pairs whose neighbourhoods this epoch's
        mini-batches sample: the edges the pruning kept (:obj:`None`: every
        training pair, without pruning)."""
        kept = self.kept_edge_index
        return None if kept is None else kept.cpu()

    def neighbor_source(self, graph: PairIndex, batch_size: int,
                        **kwargs) -> NeighborSource:
        r"""A :class:`~pyg_mmrec.loader.NeighborSource` that samples each
        epoch's neighbourhoods from the edges the pruning kept
        (:meth:`sampling_edges`), so a subgraph holds up to
        :obj:`num_neighbors` kept edges per node, as many as without
        pruning (sampling the training graph and then dropping the pruned
        edges left a fifth of them at :obj:`dropout=0.8`). Keyword
        arguments are those of
        :meth:`~pyg_mmrec.models.Recommender.neighbor_source`."""
        return NeighborSource(graph, batch_size,
                              epoch_edges=self.sampling_edges, **kwargs)

    def item_graph_embedding(self, items: Optional[Tensor] = None) -> Tensor:
        r"""The item ID embeddings smoothed on the item-item graph, of all
        items or of :obj:`items` only."""
        h = self.item_embedding.weight
        for layer in range(self.num_mm_layers):
            if items is not None and layer == self.num_mm_layers - 1:
                return csr_rows_mm(self.item_graph, items, h)
            h = sparse_mm(self.item_graph, h, self.item_graph_t)
        return h if items is None else h[items]

    def subgraph_adjacency(self, subgraph: Subgraph) -> Tensor:
        r"""The normalised adjacency of :obj:`subgraph`'s edges, without
        those this epoch's pruning dropped (in training mode), weighted by
        the degrees of the graph the full-graph path propagates on (the
        pruned training graph in training mode, else the training graph;
        see :func:`~pyg_mmrec.graphs.subgraph_adjacency`)."""
        edge_index = subgraph.edge_index
        degrees = (self.user_degree, self.item_degree)
        if self.training and self.kept_pairs is not None:
            edge_index = edge_index[:, self.kept_pairs.contains(
                subgraph.user_id[edge_index[0]],
                subgraph.item_id[edge_index[1]])]
            degrees = self.kept_degrees
        return subgraph_adjacency(subgraph, degrees, edge_index)

    def propagate(self, item_input: Tensor,
                  adj: Tensor) -> Tuple[Tensor, Tensor]:
        r"""LightGCN over :obj:`adj` from the user ID embeddings and
        :obj:`item_input`."""
        x = torch.cat([self.user_embedding.weight, item_input])
        return self.encoder(x, adj).split([self.num_users, self.num_items])

    def propagate_rows(self, item_input: Tensor, adj: Tensor, users: Tensor,
                       items: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The rows :obj:`users` :obj:`[B_u]` and :obj:`items`
        :obj:`[B_i]` (repeats allowed, in this order) of
        :meth:`propagate`, with each layer computed on the receptive field
        of those rows only
        (:func:`~pyg_mmrec.graphs.receptive.receptive_field`,
        :meth:`~pyg_mmrec.nn.LightGCNEncoder.forward_field`): the same
        values, at the cost of the rows a batch reads instead of every
        node."""
        num_users = self.num_users
        field = receptive_field(adj, torch.cat([users, items + num_users]),
                                self.encoder.num_layers)
        nodes = field.nodes[-1]  # sorted: users first
        split = int((nodes < num_users).sum())
        x = torch.cat([
            self.user_embedding.weight.index_select(0, nodes[:split]),
            item_input.index_select(0, nodes[split:] - num_users)])
        out = self.encoder.forward_field(x, field).index_select(
            0, field.index)
        return out.split([users.numel(), items.numel()])

    def encode(self, subgraph: Optional[Subgraph] = None
               ) -> Tuple[Tensor, Tensor]:
        if subgraph is not None:
            x = torch.cat([self.user_embedding(subgraph.user_id),
                           self.item_embedding(subgraph.item_id)])
            user, item = self.encoder(x, self.subgraph_adjacency(
                subgraph)).split([subgraph.num_users, subgraph.num_items])
            return user, item + self.item_graph_embedding(subgraph.item_id)
        adj = self.train_adj if self.training else self.adj
        user, item = self.propagate(self.item_embedding.weight, adj)
        return user, item + self.item_graph_embedding()

    def feature_bpr_terms(self, user_emb: Tensor,
                          batch: BPRBatch) -> Dict[str, Tensor]:
        r"""The :obj:`reg_weight`-weighted BPR terms between the batch's
        user embeddings :obj:`[B, d]` and its items' projected features, one
        per modality (none when :obj:`reg_weight` is 0)."""
        terms = {}
        if self.reg_weight > 0:
            for m in self.features.modalities:
                p = self.features.project(m, batch.pos)
                n = self.features.project(m, batch.neg)
                terms[f'bpr_{m}'] = self.reg_weight * bpr_loss(
                    (user_emb * p).sum(-1), (user_emb * n).sum(-1))
        return terms

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        user_emb, item_emb = self.encode(batch.subgraph)
        user, pos, neg = batch.node_index()
        u = user_emb[user]
        terms = {'bpr': bpr_loss((u * item_emb[pos]).sum(-1),
                                 (u * item_emb[neg]).sum(-1))}
        terms.update(self.feature_bpr_terms(u, batch))
        return terms
