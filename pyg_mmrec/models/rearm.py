"""REARM."""
import logging
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import require_features
from ..graphs import (
    homography_graphs,
    interest_features,
    train_graph,
)
from ..loader import BPRBatch, Subgraph
from ..nn import (
    CoordinateAttention,
    LightGCNEncoder,
    MetaLowRankTransform,
    bpr_loss,
    info_nce,
    orthogonality_loss,
    sparse_mm,
)
from ..nn.features import feature_tables
from .base import Recommender
from .rearm_parts import SubgraphParts, channel_modalities
from .registry import register_model

log = logging.getLogger(__name__)


@register_model('rearm')
class REARM(SubgraphParts, Recommender):
    r"""REARM from "Refining Contrastive Learning and Homography Relations
    for Multi-Modal Recommendation" (ACM MM'25, `code
    <https://github.com/MrShouxingMa/REARM>`_), for two modalities
    :math:`v` (image, else the first) and :math:`t` (the other).

    **Homography.** The user-user and item-item graphs
    :math:`\mathbf{G}_{uu}, \mathbf{G}_{ii}`
    (:func:`~pyg_mmrec.graphs.homography_graphs`: co-occurrence top-:math:`k`
    mixed with feature kNN graphs, from the training interactions only)
    propagate :math:`[\mathbf{E}_i \| \mathbf{f}_v \| \mathbf{f}_t]` and
    :math:`[\mathbf{E}_u \| \mathbf{g}_v \| \mathbf{g}_t]` (ID embeddings and
    the projected item features and user preference tables),
    :math:`n_{ii}` / :math:`n_{uu}` hops keeping the last, rows
    L2-normalised over the three blocks.

    **Modal attention** (:class:`~pyg_mmrec.nn.CoordinateAttention`, items
    only), with :math:`\sigma` the shared PReLU and LN the shared LayerNorm:
    :math:`\mathbf{a}_v = \sigma(\mathrm{LN}(\tilde{\mathbf{f}}_v +
    \mathrm{SA}_1(\tilde{\mathbf{f}}_v)))`, :math:`\mathbf{a}_t` likewise,
    :math:`\mathbf{c}_{tv} = \sigma(\mathrm{LN}(\mathbf{a}_v +
    \mathrm{MA}_1(\mathbf{a}_t, \mathbf{a}_v)))`, :math:`\mathbf{c}_{vt} =
    \sigma(\mathrm{LN}(\mathbf{a}_t + \mathrm{MA}_2(\mathbf{a}_v,
    \mathbf{a}_t)))`; users get :math:`\sigma(\tilde{\mathbf{g}}_v),
    \sigma(\tilde{\mathbf{g}}_t)`.

    **Propagation.** LightGCN (mean over layers :math:`0..L`) on the
    symmetric bipartite graph gives the modal channels
    :math:`\mathbf{M} = [\mathbf{M}^v \| \mathbf{M}^t]` and the ID channel
    :math:`\mathbf{Z}`; a :class:`~pyg_mmrec.nn.MetaLowRankTransform` per
    side maps :math:`\mathbf{Z}` through a rank-:math:`r` transform generated
    from :math:`\mathbf{M}`, giving :math:`\mathbf{s}`. The representation is

    .. math::
        [\sigma(\mathbf{M}^v) + \mathbf{Z} \,\|\, \sigma(\mathbf{M}^t) +
        \mathbf{Z} \,\|\, \sigma(\mathbf{s}) + \mathbf{Z}], \qquad
        s(u, i) = \langle \mathbf{r}_u, \mathbf{r}_i \rangle.

    **Losses.** BPR on the representations; :obj:`cl_weight` times the
    modal-shared InfoNCE between :math:`\mathbf{M}^v` and
    :math:`\mathbf{M}^t` (cosine, temperature :obj:`cl_temperature`) over the
    batch's distinct users and, separately, its distinct positive and
    negative items (:func:`~pyg_mmrec.nn.info_nce` on those rows);
    :obj:`diff_weight` times the modal-unique
    :func:`~pyg_mmrec.nn.orthogonality_loss` of the two channels over the
    batch's users and its positive items. No regulariser in the loss: the
    trainer's AdamW decays every parameter
    (``pyg_mmrec/config/models/rearm.yaml``: AdamW, lr :obj:`5e-5`, weight
    decay :obj:`5e-4`, Baby's).

    Differences from the original code, and why:

    * Negatives exclude the user's training items only; the original
      excludes validation and test items too, which tells the model where
      the held-out positives are not. :obj:`faithful=True` does so
      (:attr:`~pyg_mmrec.models.Recommender.negative_exclusion` is
      :obj:`"all"`).
    * The meta-network is trained; the original detaches its output, so
      its first layer keeps its random initialisation. :obj:`faithful=True`
      detaches it.
    * Attention dropout is capped below 1: Sports' :obj:`s_drop = 1.0`
      zeroes the self-attention weights in training only, so the branch is
      absent while training and present at test. :obj:`faithful=True`
      allows it.
    * Users without training items (TikTok has 10) get zero interest
      features and, by the co-occurrence rule, the most-interacted users as
      neighbours; the original divides by their zero degree (NaN at the
      first batch on TikTok).
    * The attention blocks have no key, value or output bias: each feeds
      a LayerNorm, which removes what they add (see
      :class:`~pyg_mmrec.nn.CoordinateAttention`).
    * The co-occurrence counts are sparse products, not dense
      :math:`n \times n` matrices, and the padding draws come from a seeded
      generator instead of the first run's cached files.
    * Model selection is on validation, and the test pass masks training
      and validation items (the trainer's protocol); the original masks
      training items only (:obj:`test_masks="train"` reproduces that).

    **Modalities.** REARM has two channels, :math:`v` and :math:`t`. A
    dataset with two item modalities uses both (image as :math:`v` when
    present, else the first in the canonical order image, text, audio);
    one with a single modality is refused, and one with more is refused
    unless :obj:`modalities` picks two (then image, if picked, is
    :math:`v`, else the first listed; the :obj:`*_image_weight` settings
    weight :math:`v`'s similarity graphs). The others are not used. See
    :obj:`channel_modalities`.

    **Mini-batch training** (:obj:`sampler='neighbor'`,
    :meth:`~pyg_mmrec.models.Recommender.neighbor_source`): a heterogeneous
    neighbour sampler over the
    training interactions and the two homography graphs as edge types
    :obj:`(user, co, user)` and :obj:`(item, co, item)`
    (:class:`~pyg_mmrec.loader.RelationNeighborSource`; their fan-out per
    hop is :obj:`homography_neighbors`, the interactions' the trainer's
    :obj:`num_neighbors`). On the sampled
    :class:`~pyg_mmrec.loader.Subgraph`, the homography hops run over its
    sampled entries of :math:`\mathbf{G}_{uu}, \mathbf{G}_{ii}` with the
    full graphs' weights (a subgraph without such entries, *e.g.*
    :meth:`~pyg_mmrec.loader.Subgraph.induced`, reads its nodes' whole
    rows: exact), the LightGCN over its interactions with the training
    graph's degrees, the attention and the meta-network over its nodes;
    the meta-network's means :math:`\bar{\mathbf{T}}` are over the
    subgraph's users (items) in training (as a batch statistic; all nodes
    for the whole graph), and those of every node in evaluation (computed
    once per evaluation), so that a node whose whole neighbourhood was
    sampled scores as on the full graph. The InfoNCE and orthogonality
    terms stay on the batch's nodes, as in full-graph training (the
    original's rule; the subgraph's other nodes are context, not
    samples).

    Args:
        data (HeteroData): The dataset; it must carry at least two item
            feature modalities (exactly two unless :obj:`modalities` is
            given).
        embedding_dim (int): :math:`d`. (default: :obj:`64`)
        num_layers (int): LightGCN layers :math:`L`. (default: :obj:`4`)
        rank (int): :math:`r`. (default: :obj:`3`)
        self_dropout (float): :obj:`s_drop`. (default: :obj:`0.4`)
        mutual_dropout (float): :obj:`m_drop`. (default: :obj:`0.6`)
        user_knn_k (int): Co-neighbours and kNN neighbours per user.
            (default: :obj:`40`)
        item_knn_k (int): Per item. (default: :obj:`10`)
        user_image_weight (float): :obj:`u_mm_image_weight`.
            (default: :obj:`0.2`)
        item_image_weight (float): :obj:`i_mm_image_weight`.
            (default: :obj:`0.0`)
        user_co_weight (float): :obj:`uu_co_weight`. (default: :obj:`0.4`)
        item_co_weight (float): :obj:`ii_co_weight`. (default: :obj:`0.2`)
        num_user_hops (int): :obj:`n_uu_layers`. (default: :obj:`1`)
        num_item_hops (int): :obj:`n_ii_layers`. (default: :obj:`1`)
        cl_temperature (float): :obj:`cl_tmp`. (default: :obj:`0.6`)
        cl_weight (float): :obj:`cl_loss_weight`. (default: :obj:`5e-6`)
        diff_weight (float): :obj:`diff_loss_weight`. (default: :obj:`5e-5`)
        graph_seed (int): Seed of the co-occurrence padding draws.
            (default: :obj:`0`)
        knn_max_dim (int, optional): Search the kNN neighbours of features
            wider than this in a principal projection of that dimension
            (approximate: see :func:`~pyg_mmrec.graphs.knn_graph`; for 4096-d
            features on a Clothing-size graph).
            (default: :obj:`None`, exact)
        knn_method (str): The kNN search of the similarity graphs
            (:func:`~pyg_mmrec.graphs.knn_graph`'s :obj:`method`):
            :obj:`"ivf"` for an approximate inverted-file search, whose cost
            grows as :math:`n^{3/2}` instead of :math:`n^2` (a million users).
            (default: :obj:`"auto"`, exact)
        normalize_features (bool): Scale every item's feature rows to unit
            L2 norm before anything is built from them (the kNN graphs,
            being cosine, do not change). The joint L2 normalisation of
            :math:`[\mathbf{E} \| \mathbf{f}_v \| \mathbf{f}_t]` is
            scale-sensitive: with TikTok's raw image rows (norm 33) the
            projected image block starts 30x longer than the ID block (25.6
            against 0.8) and 7x longer than the audio block, so the ID and
            audio parts enter the model at a few percent of the row.
            (default: :obj:`False`, the original's raw features)
        train_features (bool): Train the item feature and user preference
            tables, as the original. :obj:`False` keeps them fixed (the
            item tables are then the dataset's own tensors, and neither is
            in the state dict): with Clothing's 4096-d features they are
            280M entries, whose copy, gradients and AdamW moments take
            3.6 GiB beside the 1.1 GiB of the tables themselves
            (``experiments/results/scale.md``). (default: :obj:`True`)
        faithful (bool): Keep the original's negatives, detached
            meta-network and unrestricted dropout. (default: :obj:`False`)
        modalities (Sequence[str], optional): The two modalities used as
            the visual and textual channels, for a dataset with more than
            two (e.g. :obj:`["image", "audio"]`). (default: :obj:`None`,
            the dataset's two)
        homography_neighbors (int or Mapping[str, int]): Entries of each
            node's row of :math:`\mathbf{G}_{uu}` and
            :math:`\mathbf{G}_{ii}` sampled per hop in mini-batch
            training (:obj:`-1`: all), one number for both or
            :obj:`{"user": ..., "item": ...}`. (default: :obj:`10`)
        cooccurrence_cap (int, optional): Build the co-occurrence top-k
            from at most this many users per item (items per user), a
            seeded sample of the more popular ones' (see
            :func:`~pyg_mmrec.graphs.cooccurrence_topk_graph`): at a
            million users, the exact counts of a power-law graph are
            :math:`10^{10}` pairs. (default: :obj:`None`, exact)

    The defaults are Baby's settings (models.md 4.6); the original has none
    for TikTok, whose configuration uses Baby's.
    """
    requires_features = True
    supports_subgraph = True
    repr_settings = ('modalities', 'embedding_dim', 'faithful')

    def __init__(
        self,
        data: HeteroData,
        embedding_dim: int = 64,
        num_layers: int = 4,
        rank: int = 3,
        self_dropout: float = 0.4,
        mutual_dropout: float = 0.6,
        user_knn_k: int = 40,
        item_knn_k: int = 10,
        user_image_weight: float = 0.2,
        item_image_weight: float = 0.0,
        user_co_weight: float = 0.4,
        item_co_weight: float = 0.2,
        num_user_hops: int = 1,
        num_item_hops: int = 1,
        cl_temperature: float = 0.6,
        cl_weight: float = 5e-6,
        diff_weight: float = 5e-5,
        graph_seed: int = 0,
        knn_max_dim: Optional[int] = None,
        knn_method: str = 'auto',
        normalize_features: bool = False,
        train_features: bool = True,
        faithful: bool = False,
        modalities: Optional[Sequence[str]] = None,
        homography_neighbors: Union[int, Mapping[str, int]] = 10,
        cooccurrence_cap: Optional[int] = None,
    ):
        super().__init__(data)
        # The meta-network's means over every node (evaluation of subgraphs)
        self._meta_means: Optional[Tuple[Tuple[Tensor, Tensor], ...]] = None
        if not isinstance(homography_neighbors, Mapping):
            homography_neighbors = {'user': homography_neighbors,
                                    'item': homography_neighbors}
        if set(homography_neighbors) != {'user', 'item'}:
            raise ValueError(f"homography_neighbors must be a number or a "
                             f"mapping with the keys 'user' and 'item', got "
                             f"{homography_neighbors!r}")
        self.homography_neighbors = {k: int(v) for k, v in
                                     homography_neighbors.items()}
        feats = require_features(data, type(self).__name__)
        #: The (visual, textual) channels' modalities.
        self.modalities: Tuple[str, str] = channel_modalities(
            list(feats), modalities, getattr(data, 'name', '?'))
        unused = [m for m in feats if m not in self.modalities]
        if unused:
            log.info("REARM: %s is the visual channel, %s the textual one; "
                     "not used: %s", *self.modalities, ', '.join(unused))
        feats = {m: feats[m] for m in self.modalities}
        for name, p in (('self_dropout', self_dropout),
                        ('mutual_dropout', mutual_dropout)):
            if not 0.0 <= p < 1.0 and not (faithful and p == 1.0):
                raise ValueError(f"{name} must be in [0, 1) (1 only with "
                                 f"faithful=True), got {p}")
        if normalize_features:
            feats = {m: F.normalize(x, dim=1) for m, x in feats.items()}
        self.embedding_dim, self.num_layers, self.rank = (embedding_dim,
                                                          num_layers, rank)
        self.num_user_hops, self.num_item_hops = num_user_hops, num_item_hops
        self.cl_temperature, self.cl_weight = cl_temperature, cl_weight
        self.diff_weight, self.faithful = diff_weight, faithful
        #: Which interactions the trainer's negatives avoid.
        self.negative_exclusion = 'all' if faithful else 'train'

        graph = train_graph(data)
        x_v, x_t = (feats[m] for m in self.modalities)
        # Trainable copies of the item features and the user preference
        # tables (initialised to the users' interest features), as the
        # original. Fixed with train_features=False: buffers outside the
        # state dict (rebuilt from the data), the item ones the dataset's
        # own tensors, with no gradient and no AdamW state.
        users = [interest_features(graph, x) for x in (x_v, x_t)]
        self.item_features = feature_tables([x_v, x_t], train_features)
        self.user_features = feature_tables(users, train_features,
                                            owned=True)
        self.user_embedding = torch.nn.Embedding(self.num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(self.num_items, embedding_dim)
        self.item_projections = torch.nn.ModuleList([
            torch.nn.Linear(x.size(1), embedding_dim) for x in (x_v, x_t)])
        self.user_projections = torch.nn.ModuleList([
            torch.nn.Linear(x.size(1), embedding_dim) for x in (x_v, x_t)])
        # Each attention feeds a LayerNorm: only its query bias matters.
        self.self_attention = torch.nn.ModuleList([
            CoordinateAttention(self_dropout, bias='query')
            for _ in range(2)])
        self.mutual_attention = torch.nn.ModuleList([
            CoordinateAttention(mutual_dropout, bias='query')
            for _ in range(2)])
        self.norm = torch.nn.LayerNorm(embedding_dim)
        self.act = torch.nn.PReLU()
        self.user_meta, self.item_meta = (
            MetaLowRankTransform(2 * embedding_dim, embedding_dim, rank,
                                 detach_knowledge=faithful)
            for _ in range(2))
        self.encoder = LightGCNEncoder(num_layers, combine='mean',
                                       symmetric=True)

        g_uu, g_ii = homography_graphs(
            graph, {m: feats[m] for m in self.modalities}, user_knn_k,
            item_knn_k, user_image_weight, item_image_weight, user_co_weight,
            item_co_weight,
            generator=torch.Generator().manual_seed(graph_seed),
            max_dim=knn_max_dim, cooccurrence_cap=cooccurrence_cap,
            knn_method=knn_method)
        for name, adj in (('user_graph', g_uu), ('item_graph', g_ii)):
            # Not symmetric: the transposes of the backward pass are built
            # on first need (graph_transpose).
            self.register_buffer(name, adj, persistent=False)
        self.register_training_graph(data)
        self.reset_parameters()

    def reset_parameters(self):
        for emb in (self.user_embedding, self.item_embedding):
            torch.nn.init.normal_(emb.weight, std=0.1)
        for lin in [*self.item_projections, *self.user_projections]:
            torch.nn.init.xavier_normal_(lin.weight)
            torch.nn.init.zeros_(lin.bias)
        for att in [*self.self_attention, *self.mutual_attention]:
            att.reset_parameters()
        self.norm.reset_parameters()
        torch.nn.init.constant_(self.act.weight, 0.25)
        self.user_meta.reset_parameters()
        self.item_meta.reset_parameters()

    def _homography(self, x: Tensor, adj: Tensor, adj_t: Optional[Tensor],
                    hops: int) -> Tuple[Tensor, ...]:
        for _ in range(hops):
            x = sparse_mm(adj, x, adj_t)
        return F.normalize(x, dim=1).split(self.embedding_dim, dim=1)

    def _attend(self, f_v: Tensor, f_t: Tensor) -> Tuple[Tensor, Tensor]:
        def block(x: Tensor, delta: Tensor) -> Tensor:
            return self.act(self.norm(x + delta))

        a_v = block(f_v, self.self_attention[0](f_v))
        a_t = block(f_t, self.self_attention[1](f_t))
        c_tv = block(a_v, self.mutual_attention[0](a_t, a_v))
        c_vt = block(a_t, self.mutual_attention[1](a_v, a_t))
        return c_tv, c_vt

    def channels(self, subgraph: Optional[Subgraph] = None
                 ) -> Tuple[Tensor, Tensor]:
        r"""The modal channels :math:`\mathbf{M}` :obj:`[U + I, 2d]` and the
        representations :obj:`[U + I, 3d]` of every user, then item (of the
        subgraph's, given a :obj:`subgraph`)."""
        if subgraph is None:
            U = self.num_users
            f = [lin(x) for lin, x in zip(self.item_projections,
                                          self.item_features)]
            g = [lin(x) for lin, x in zip(self.user_projections,
                                          self.user_features)]
            e_i, f_v, f_t = self._homography(
                torch.cat([self.item_embedding.weight, *f], dim=1),
                self.item_graph, self.graph_transpose('item_graph'),
                self.num_item_hops)
            e_u, g_v, g_t = self._homography(
                torch.cat([self.user_embedding.weight, *g], dim=1),
                self.user_graph, self.graph_transpose('user_graph'),
                self.num_user_hops)
            adj, means = self.adj, (None, None)
        else:
            U = subgraph.num_users
            e_i, f_v, f_t = self.subgraph_homography('item', subgraph)
            e_u, g_v, g_t = self.subgraph_homography('user', subgraph)
            adj = self.training_adjacency(subgraph)
            means = (None, None) if self.training else self.meta_means()
            # The attention's dropout draws follow the items' order: run it
            # in global id order (the full graph's for the whole graph).
            order = subgraph.item_id.argsort()
            back = torch.empty_like(order)
            back[order] = torch.arange(order.numel(), device=order.device)
            f_v, f_t = f_v[order], f_t[order]
        c_tv, c_vt = self._attend(f_v, f_t)
        if subgraph is not None:
            c_tv, c_vt = c_tv[back], c_vt[back]
        modal = torch.cat([torch.cat([self.act(g_v), self.act(g_t)], dim=1),
                           torch.cat([c_tv, c_vt], dim=1)])
        m = self.encoder(modal, adj)
        z = self.encoder(torch.cat([e_u, e_i]), adj)
        s = torch.cat([self.user_meta(m[:U], z[:U], means[0]),
                       self.item_meta(m[U:], z[U:], means[1])])
        d = self.embedding_dim
        rep = torch.cat([self.act(m[:, :d]) + z, self.act(m[:, d:]) + z,
                         self.act(s) + z], dim=1)
        return m, rep

    def encode(self, subgraph: Optional[Subgraph] = None
               ) -> Tuple[Tensor, Tensor]:
        _, rep = self.channels(subgraph)
        items = self.num_items if subgraph is None else subgraph.num_items
        return rep.split([rep.size(0) - items, items])

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        m, rep = self.channels(batch.subgraph)
        U = (self.num_users if batch.subgraph is None else
             batch.subgraph.num_users)
        d = self.embedding_dim
        user, pos, neg = batch.node_index()
        u = rep[user]
        terms = {'bpr': bpr_loss((u * rep[U + pos]).sum(-1),
                                 (u * rep[U + neg]).sum(-1))}
        if self.cl_weight > 0:
            users = user.unique()
            items = U + torch.cat([pos, neg]).unique()
            terms['cl'] = self.cl_weight * sum(
                info_nce(m[nodes, :d], m[nodes, d:], self.cl_temperature)
                for nodes in (items, users))
        if self.diff_weight > 0:
            terms['diff'] = self.diff_weight * sum(
                orthogonality_loss(m[nodes, :d], m[nodes, d:])
                for nodes in (user, U + pos))
        return terms
