"""GenRec-V1."""
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import require_features
from ..graphs import (
    csr_row_block,
    csr_transpose,
    knn_adjacency,
    modality_clusters,
)
from ..loader import BPRBatch, Subgraph
from ..nn import (
    BitFlipDiffusion,
    FlipTransformerDenoiser,
    ModalityFeatures,
    common_specific_fusion,
    info_nce,
    sparse_mm,
)
from ..nn.bitflip import candidate_rows, top_generated  # noqa: F401 (as before)
from ..nn.losses import bpr_loss
from .base import Recommender
from .diffmm_core import DiffMMCore
from .diffmm_subgraph import SubgraphParts
from .genrec_parts import GenerationParts
from .registry import register_model

GRAPH_MIXES = ('softmax', 'sum')


def _block(in_channels: int, out_channels: int, dropout: float
           ) -> torch.nn.Sequential:
    # Linear -> BatchNorm -> LeakyReLU(0.2) -> Dropout, the projectors.
    return torch.nn.Sequential(
        torch.nn.Linear(in_channels, out_channels),
        torch.nn.BatchNorm1d(out_channels), torch.nn.LeakyReLU(0.2),
        torch.nn.Dropout(dropout))


@register_model('genrec')
class GenRec(GenerationParts, SubgraphParts, Recommender):
    r"""GenRec-V1 from "Flip is Better than Noise: Unbiased Interest
    Generation for Multimedia Recommendation" (ACM MM'25, `code
    <https://github.com/orangeheyue/GenRec-V1>`_), a DiffMM derivative.

    **Generated graph.** A :class:`~pyg_mmrec.nn.FlipTransformerDenoiser`
    learns a :class:`~pyg_mmrec.nn.BitFlipDiffusion` of the users' binary
    training rows; it trains in the :obj:`"denoiser"`
    :class:`~pyg_mmrec.models.Stage` (one pass over all users, before the
    recommender, in every epoch). After it, every user's row is flipped to
    step :obj:`sampling_steps - 1` and denoised by the reverse chain,
    :math:`(\mathbf{x}, \mathbf{p})`; the generated row is :math:`\mathbf{x}`
    at the user's top :obj:`gen_topk` items by :math:`\mathbf{p}` and the
    training row elsewhere (optionally debiased by the item interest
    clusters, :func:`~pyg_mmrec.nn.interest_debias`), and its top
    :obj:`rebuild_k` items by generated row :math:`\odot\,\mathbf{p}` are the
    edges of :math:`\mathbf{G}` (self-looped GCN normalisation, entries
    dropped with :obj:`keep_rate`). It is built block by block over users
    (:obj:`denoiser_batch_size` rows at a time, never a dense
    :math:`U \times I`), from the training interactions only. The training
    graph, :math:`\mathbf{G}`, the stage and the regulariser are the
    DiffMM family's :class:`~pyg_mmrec.models.DiffMMCore` (:attr:`core`).

    **Recommender** (one layer, :math:`\mathrm{LGN}(\mathbf{M}) =
    \frac{1}{2}(\mathbf{E} + \mathbf{M}\mathbf{E})`, :math:`\mathbf{E} =
    [\mathbf{E}_u; \mathbf{E}_i]`, :math:`\hat{\mathbf{A}}` the
    self-looped GCN-normalised training graph, :math:`\mathbf{R}` its
    user-item block, :math:`\mathbf{S}_m` the weighted cosine kNN graph
    of modality :math:`m`):

    .. math::
        \mathbf{C} = w_o \mathrm{LGN}(\hat{\mathbf{A}}) +
        w_g \mathrm{LGN}(\mathbf{G}) \;\; (\text{or }
        \mathrm{LGN}(\hat{\mathbf{A}} + \mathbf{G})), \qquad
        \mathbf{F}_m = \rho P_m(\mathbf{X}_m) + Q_m(P_m(\mathbf{X}_m)),

    .. math::
        \mathbf{H}^i_m = \mathbf{S}_m (\mathbf{E}_i \odot g_m(\mathbf{F}_m)),
        \quad \mathbf{H}_m = [\mathbf{R}\mathbf{H}^i_m; \mathbf{H}^i_m],
        \quad a_m = \mathrm{softmax}_m(c(\mathbf{H}_m)),

    .. math::
        \bar{\mathbf{H}} = \sum_m a_m \mathbf{H}_m, \quad
        \mathbf{S} = \frac{1}{4}\Big(\bar{\mathbf{H}} + \sum_m
        g_m(\mathbf{C}) \odot (\mathbf{H}_m - \bar{\mathbf{H}})\Big), \quad
        \mathbf{Z} = \mathbf{C} + \mathbf{S},

    with :math:`(w_o, w_g)` a softmax of two learnt scalars, :math:`P_m,
    Q_m` Linear-BatchNorm-LeakyReLU-Dropout projectors, :math:`g_m`
    Linear-BatchNorm-sigmoid gates and :math:`c` a
    Linear-BatchNorm-tanh-Linear scorer. The loss is BPR on
    :math:`\mathbf{Z}`, :obj:`reg_weight` times the squared norm of the ID
    tables, and in-batch InfoNCE: :obj:`ssl_weight1` times
    (:math:`\mathbf{S}` vs :math:`\mathbf{C}` for the batch's positive items
    and users) plus :obj:`ssl_weight2` times (the users' :math:`\mathbf{Z}`
    vs the positive items' :math:`\mathbf{C}` and :math:`\mathbf{S}`).

    Differences from the original code, and why (the default is the fixed
    behaviour; :obj:`faithful=True` keeps each original behaviour that
    changes training or scores):

    * **Focal loss**: the original's weight :math:`\alpha \cdot
      \mathrm{pos\_weight}` (about 250 on TikTok) makes the
      non-interactions' coefficient negative, so the denoiser is rewarded
      for :math:`p \to 1` everywhere (its loss is negative and grows); here
      :math:`\alpha \in [0, 1]` (or :obj:`denoiser_loss="bce"`, weighted
      BCE). Faithful: the original's.
    * **Reverse step**: the original uses the stale :math:`\Gamma_{T-1},
      E_{T-1}` and a formula that ignores the current state; here Bayes'
      rule at each step (see :class:`~pyg_mmrec.nn.BitFlipDiffusion`).
      Faithful: the original's.
    * **Eval mode**: the original never leaves training mode (BatchNorm
      batch statistics and dropout in testing and generation). Here
      evaluation uses eval mode and the denoiser generates in eval mode.
      Faithful: every submodule stays in training mode.
    * **Side embedding**: as coded, TikTok's :math:`\mathbf{S}` keeps only
      the audio-specific part, and on Baby/Sports the scores use
      :math:`\mathbf{C}` only. Here every modality's specific part enters
      :math:`\mathbf{S}` and the scores are :math:`\mathbf{C} + \mathbf{S}`
      (the authors' April 2025 version). Faithful: with an audio modality
      (TikTok) :math:`\mathbf{S}` uses the audio part only and scores use
      :math:`\mathbf{C} + \mathbf{S}`; without (Baby/Sports) scores use
      :math:`\mathbf{C}`.
    * **Interest clusters** (only with :obj:`interest_debias`): each
      modality has its own clusters, and a flip must pass every modality's
      check; the original passes the image clusters for every modality
      (faithful: so here too).
    * **Empty picks**: a user whose generated row has no one gets no
      generated edge (the original's top-1 of an all-zero row picks an
      arbitrary item; faithful: so here too).
    * Not computed, because they have no gradient and do not change
      training: the denoiser's KL and contrast terms and the full reverse
      chain run on every training batch of the original.
    * Model selection is on validation (the original reports the best test
      epoch: :obj:`select_on="test"` in the trainer reproduces that,
      labelled); :obj:`--data Sports` and :obj:`type=bool` flags are
      command-line bugs with no counterpart here.

    **Mini-batch training** (:obj:`sampler="neighbor"`; see
    :mod:`~pyg_mmrec.models.diffmm_subgraph`): subgraphs sampled over the
    training interactions and :math:`\mathbf{G}` (as it is when the
    epoch's batches start), and the propagation above on the subgraph's
    nodes with the full graphs' weights. It is one hop of
    :math:`\hat{\mathbf{A}}` and :math:`\mathbf{G}`
    (:obj:`subgraph_hops` is 1) plus the item kNN hop, which reads the
    whole rows of :math:`\mathbf{S}_m` of the subgraph's items (their
    neighbours' features and embeddings join: exact). Local to the
    subgraph: the regulariser (its rows of the ID tables, not every row)
    and, in training mode, the BatchNorm statistics (over its nodes, and
    over its items and their kNN neighbours for :math:`g_m(\mathbf{F}_m)`
    and the projectors, instead of every node) and the dropout draws (in
    that order). The InfoNCE terms are in-batch, as on the full graph. The
    whole graph as a subgraph gives the full-graph losses.

    Args:
        data (HeteroData): The dataset; it must carry item features.
        embedding_dim (int): :obj:`latdim` :math:`d`. (default: :obj:`64`)
        knn_k (int): Neighbours of the modality kNN graphs. (default:
            :obj:`5`)
        reg_weight (float): :obj:`reg`. (default: :obj:`1e-5`)
        temperature (float): InfoNCE :obj:`temp`. (default: :obj:`0.5`)
        ssl_weight1 (float): :obj:`ssl_reg1`. (default: :obj:`0.1`)
        ssl_weight2 (float): :obj:`ssl_reg2`. (default: :obj:`0.1`)
        dropout (float): Dropout of the projectors. (default: :obj:`0.1`)
        graph_mix (str): :obj:`"softmax"` (TikTok/Sports) or :obj:`"sum"`
            (Baby: :math:`\hat{\mathbf{A}} + \mathbf{G}`). (default:
            :obj:`"softmax"`)
        use_generated_graph (bool): :obj:`False` drops :math:`\mathbf{G}`
            and the denoiser (an ablation). (default: :obj:`True`)
        keep_rate (float): Entry keep rate of :math:`\mathbf{G}`.
            (default: :obj:`0.5`)
        num_steps (int): Diffusion steps :math:`T`. (default: :obj:`5`)
        sampling_steps (int): Flip level of the generation's start.
            (default: :obj:`5`)
        flip_temperature (float, optional): :math:`\tau_f` (see
            :class:`~pyg_mmrec.nn.BitFlipDiffusion`). (default: :obj:`1.0`)
        denoiser_loss (str): :obj:`"focal"` or :obj:`"bce"`. (default:
            :obj:`"focal"`)
        focal_alpha (float): (default: :obj:`0.25`)
        focal_gamma (float): (default: :obj:`2.0`)
        denoiser_hidden (int): (default: :obj:`512`)
        denoiser_layers (int): :obj:`num_layers`. (default: :obj:`6`)
        denoiser_heads (int): :obj:`nhead`. (default: :obj:`8`)
        denoiser_ff (int): Feed-forward size. (default: :obj:`512`)
        denoiser_dropout (float): (default: :obj:`0.2`)
        denoiser_time_dim (int): :obj:`d_emb_size`. (default: :obj:`10`)
        denoiser_lr (float): (default: :obj:`1e-3`)
        denoiser_batch_size (int): User rows per denoiser step and per
            block of the generation. (default: :obj:`1024`)
        gen_topk (int): Candidates per user. (default: :obj:`5`)
        rebuild_k (int): Generated edges per user. (default: :obj:`1`)
        interest_debias (bool): :obj:`OpenInterestDebiase`. (default:
            :obj:`False`)
        num_clusters (int or dict): KMeans clusters per modality (the
            original's per-dataset counts are in the configs and
            :obj:`pyg_mmrec.graphs.GENREC_CLUSTERS`). (default: :obj:`20`)
        auto_clusters (list[int], optional): Choose each modality's count
            among these by the second-difference elbow instead.
            (default: :obj:`None`)
        sample_ratio (float): Share of the flips the debiasing checks.
            (default: :obj:`0.1`)
        feature_shift (dict, optional): Baby's :obj:`denoise_norm`:
            :math:`\mathbf{X}_m \leftarrow \mathbf{X}_m - w_m \sum
            \sigma(\mathbf{X}_m)` for the given weights :math:`w_m` (after
            the kNN graphs are built). (default: :obj:`None`)
        cluster_seed (int): KMeans seed. (default: :obj:`421`)
        faithful (bool): See above. (default: :obj:`False`)
    """
    requires_features = True
    supports_subgraph = True
    repr_settings = ('modalities', 'embedding_dim', 'use_generated_graph',
                     'faithful')

    def __init__(
        self,
        data: HeteroData,
        embedding_dim: int = 64,
        knn_k: int = 5,
        reg_weight: float = 1e-5,
        temperature: float = 0.5,
        ssl_weight1: float = 0.1,
        ssl_weight2: float = 0.1,
        dropout: float = 0.1,
        graph_mix: str = 'softmax',
        use_generated_graph: bool = True,
        keep_rate: float = 0.5,
        num_steps: int = 5,
        sampling_steps: int = 5,
        flip_temperature: Optional[float] = 1.0,
        denoiser_loss: str = 'focal',
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        denoiser_hidden: int = 512,
        denoiser_layers: int = 6,
        denoiser_heads: int = 8,
        denoiser_ff: int = 512,
        denoiser_dropout: float = 0.2,
        denoiser_time_dim: int = 10,
        denoiser_lr: float = 1e-3,
        denoiser_batch_size: int = 1024,
        gen_topk: int = 5,
        rebuild_k: int = 1,
        interest_debias: bool = False,
        num_clusters: Union[int, Mapping[str, int]] = 20,
        auto_clusters: Optional[Sequence[int]] = None,
        sample_ratio: float = 0.1,
        feature_shift: Optional[Mapping[str, float]] = None,
        cluster_seed: int = 421,
        faithful: bool = False,
    ):
        super().__init__(data)
        feats = require_features(data, type(self).__name__)
        if graph_mix not in GRAPH_MIXES:
            raise ValueError(f"graph_mix must be one of {GRAPH_MIXES}, "
                             f"got {graph_mix!r}")
        if not 0 <= sampling_steps <= num_steps:
            raise ValueError(f"sampling_steps must be in [0, {num_steps}], "
                             f"got {sampling_steps}")
        if not 1 <= rebuild_k <= gen_topk <= self.num_items:
            raise ValueError(f"need 1 <= rebuild_k <= gen_topk <= "
                             f"{self.num_items}, got rebuild_k={rebuild_k}, "
                             f"gen_topk={gen_topk}")
        unknown = set(feature_shift or {}) - set(feats)
        if unknown:
            raise ValueError(f"feature_shift names modalities the data lacks: "
                             f"{sorted(unknown)} (has {list(feats)})")
        self.modalities: List[str] = list(feats)
        self.embedding_dim, self.faithful = embedding_dim, faithful
        self.temperature, self.graph_mix = temperature, graph_mix
        self.ssl_weight1, self.ssl_weight2 = ssl_weight1, ssl_weight2
        self.use_generated_graph = use_generated_graph
        self.sampling_steps, self.gen_topk = sampling_steps, gen_topk
        self.sample_ratio = sample_ratio
        tiktok_rule = faithful and 'audio' in self.modalities
        #: The modalities whose specific part enters S, and whether the
        #: scores add S (the original's dataset rules with faithful=True).
        self.side_modalities = (['audio'] if tiktok_rule
                                else list(self.modalities))
        self.side_in_score = tiktok_rule or not faithful

        self.user_embedding = torch.nn.Embedding(self.num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(self.num_items, embedding_dim)
        #: The item features and their projections :math:`P_m`.
        self.features = ModalityFeatures(
            feats, embedding_dim, projection='block', dropout=dropout,
            dtype=torch.float32, shift=feature_shift)
        self.projector = torch.nn.ModuleDict({
            m: _block(embedding_dim, embedding_dim, dropout)
            for m in feats})
        self.gates = torch.nn.ModuleDict({
            m: torch.nn.Sequential(
                torch.nn.Linear(embedding_dim, embedding_dim),
                torch.nn.BatchNorm1d(embedding_dim), torch.nn.Sigmoid())
            for m in feats})
        self.common = torch.nn.Sequential(
            torch.nn.Linear(embedding_dim, embedding_dim),
            torch.nn.BatchNorm1d(embedding_dim), torch.nn.Tanh(),
            torch.nn.Linear(embedding_dim, 1, bias=False))
        self.res_scale = torch.nn.Parameter(torch.ones(()))
        #: (origin_weight, generation_weight), softmax-mixed.
        self.mix_weight = (torch.nn.Parameter(torch.ones(2))
                           if use_generated_graph and graph_mix == 'softmax'
                           else None)

        for m, x in feats.items():  # on the raw features
            adj = knn_adjacency(x, knn_k, weighting='similarity',
                                normalization='sym', degree='weighted')
            self.register_buffer(f'knn_{m}', adj, persistent=False)
            self.register_buffer(f'knn_{m}_t', csr_transpose(adj),
                                 persistent=False)
        #: The training graph, G, the denoiser stage, the regulariser.
        self.core = DiffMMCore(data, ['items'], self._generate, rebuild_k,
                               keep_rate, denoiser_lr, denoiser_batch_size,
                               reg_weight)
        self.process = BitFlipDiffusion(num_steps, flip_temperature,
                                        denoiser_loss, focal_alpha,
                                        focal_gamma, faithful=faithful)
        self.denoiser = (FlipTransformerDenoiser(
            self.num_items, denoiser_hidden, denoiser_time_dim,
            denoiser_layers, denoiser_heads, denoiser_ff,
            dropout=denoiser_dropout)
            if use_generated_graph else None)
        self.interest_debias = interest_debias
        self.clusters: Dict[str, Tensor] = {}
        if interest_debias:
            counts = (num_clusters if isinstance(num_clusters, Mapping)
                      else {m: int(num_clusters) for m in feats})
            clusters = modality_clusters(feats, counts, auto_clusters,
                                         cluster_seed)
            if faithful:  # the original's image labels for every modality
                first = clusters[self.modalities[0]]
                clusters = {m: first for m in self.modalities}
            self.clusters = dict(clusters)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        self.features.reset_parameters()
        for part in (self.projector, self.gates, self.common):
            for module in part.modules():
                if isinstance(module, (torch.nn.Linear,
                                       torch.nn.BatchNorm1d)):
                    module.reset_parameters()
        with torch.no_grad():
            self.res_scale.fill_(1.0)
            if self.mix_weight is not None:
                self.mix_weight.fill_(1.0)
        if self.denoiser is not None:
            self.denoiser.reset_parameters()

    def train(self, mode: bool = True) -> 'GenRec':
        super().train(mode)
        if self.faithful and not mode:  # the original never enters eval mode
            for child in self.children():
                child.train(True)
        return self

    # Recommender ---------------------------------------------------------
    def content_embedding(self, e: Tensor,
                          subgraph: Optional[Subgraph] = None) -> Tensor:
        r"""The collaborative embedding :math:`\mathbf{C}` of
        :math:`\mathbf{E}` :obj:`[U + I, d]` (or of :obj:`subgraph`'s
        nodes)."""
        base = sparse_mm(self.core.blocks(subgraph).adj, e, symmetric=True)
        if self.denoiser is None:
            return 0.5 * (e + base)
        g, g_t = self.core.generated('items', subgraph)
        gen = sparse_mm(g, e, g_t)
        if self.graph_mix == 'sum':
            return 0.5 * (e + base + gen)
        w = torch.softmax(self.mix_weight, dim=0)
        return 0.5 * (w[0] * (e + base) + w[1] * (e + gen))

    def modality_embedding(self, m: str,
                           subgraph: Optional[Subgraph] = None) -> Tensor:
        r""":math:`\mathbf{H}_m` :obj:`[U + I, d]` (or of :obj:`subgraph`'s
        nodes: the kNN hop reads its items' whole rows of
        :math:`\mathbf{S}_m`, exactly)."""
        knn, knn_t = getattr(self, f'knn_{m}'), getattr(self, f'knn_{m}_t')
        items, item = None, self.item_embedding.weight
        if subgraph is not None:  # the items' rows, on the items they read
            knn, knn_t, items = csr_row_block(knn, subgraph.item_id)
            item = self.item_embedding(items)
        p = self.features.project(m, items)
        f = self.res_scale * p + self.projector[m](p)
        item = sparse_mm(knn, item * self.gates[m](f), knn_t)
        blocks = self.core.blocks(subgraph)
        return torch.cat([sparse_mm(blocks.norm, item, blocks.norm_t), item])

    def propagate(self, subgraph: Optional[Subgraph] = None
                  ) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The final embedding :math:`\mathbf{Z}`, the side embedding
        :math:`\mathbf{S}` and the content embedding :math:`\mathbf{C}`,
        each :obj:`[U + I, d]` (or of :obj:`subgraph`'s nodes)."""
        e = torch.cat(self.node_embeddings(subgraph))
        content = self.content_embedding(e, subgraph)
        hidden = torch.stack([self.modality_embedding(m, subgraph)
                              for m in self.modalities])  # [M, N, d]
        logits = torch.stack([self.common(h) for h in hidden])
        side = common_specific_fusion(hidden, logits, [
            self.gates[m](content) if m in self.side_modalities else None
            for m in self.modalities], divisor=4)
        final = content + side if self.side_in_score else content
        return final, side, content

    def encode(self, subgraph: Optional[Subgraph] = None
               ) -> Tuple[Tensor, Tensor]:
        return self.core.blocks(subgraph).split(self.propagate(subgraph)[0])

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        sub = batch.subgraph
        split = self.core.blocks(sub).split
        final, side, content = map(split, self.propagate(sub))
        u, p, n = batch.node_index()
        f_u = final[0][u]
        terms = {'bpr': bpr_loss((f_u * final[1][p]).sum(-1),
                                 (f_u * final[1][n]).sum(-1))}
        terms.update(self.embedding_reg_terms(sub))
        nce = lambda a, b: info_nce(a, b, self.temperature)  # noqa: E731
        s_p, c_p = side[1][p], content[1][p]
        cl1 = nce(s_p, c_p) + nce(side[0][u], content[0][u])
        cl2 = nce(f_u, c_p) + nce(f_u, s_p)
        terms['cl'] = self.ssl_weight1 * cl1 + self.ssl_weight2 * cl2
        return terms
