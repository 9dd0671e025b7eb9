"""MDMNS."""
import functools
import operator
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import require_features
from ..loader import BPRBatch, Subgraph
from ..nn import (
    mdmns_noise_levels,
    multi_level_info_nce,
    sparse_mm,
    view_pair_info_nce,
)
from ..nn.losses import bpr_loss
from .base import Recommender
from .diffmm_subgraph import SubgraphParts
from .mdmns_parts import DiffusionParts
from .registry import register_model

FUSED = 'fused'


@register_model('mdmns')
class MDMNS(DiffusionParts, SubgraphParts, Recommender):
    r"""MDMNS from "Modal-aware Diffusion-enhanced with Multi-level Negative
    Sampling" for multimodal recommendation (`code
    <https://github.com/HuXianshengNXU/MDMNS-main>`_), a DiffMM derivative.

    **Diffusion.** A :class:`~pyg_mmrec.nn.ModalityDiffusion`
    (:obj:`diffusion`): one denoiser per modality :math:`m` reconstructs
    users' interaction rows, guided by the other modalities' features, and
    generates a user-item graph :math:`\mathbf{G}_m` per modality from each
    user's top :obj:`rebuild_k` denoised items. The denoisers train in the
    :obj:`"diffusion"` :class:`~pyg_mmrec.models.Stage`
    (:meth:`~pyg_mmrec.models.Recommender.stages`):
    one pass over all user rows before the recommender's batches in every
    epoch, after which the graphs are regenerated. The training graph, the
    generated graphs, the stage and the regulariser are the DiffMM
    family's :class:`~pyg_mmrec.models.DiffMMCore` (:obj:`core`).

    **Recommender.** With :math:`\mathbf{A}` the self-looped GCN-normalised
    training graph, :math:`\bar{\mathbf{F}}_m` the L2-normalised projected
    features and :math:`\lambda_a` = :obj:`ris_adj_lambda`, each modality
    branch is

    .. math::
        \mathbf{H}_m = \mathbf{A}[\mathbf{E}_u; \bar{\mathbf{F}}_m] +
        \mathbf{A}[(\mathbf{A}[\mathbf{E}_u; \bar{\mathbf{F}}_m])_{u};
        \mathbf{E}_i] + \lambda_a \mathbf{G}_m [\mathbf{E}_u; \mathbf{E}_i],

    the fused branch does the same with the softmax-weighted sum of the
    branches' item halves in place of :math:`\bar{\mathbf{F}}_m` and
    :math:`\mathbf{A}` in place of :math:`\mathbf{G}_m`, and every branch
    ends with :math:`\mathbf{Z} = \sum_{l=0}^{L} \mathbf{A}^l \mathbf{H} +
    \lambda_r \, \mathrm{norm}(\mathbf{H})`. Training minimises BPR on the
    modality branches, :obj:`reg_weight` times the squared norm of the ID
    tables, and a contrastive term (:obj:`cl_method`): 0 is DiffMM's
    contrast of the generated-graph modality views; 1 is the multi-level
    loss: InfoNCE between the fused and every modality branch, plus InfoNCE
    of every modality's item embeddings against noisy copies of themselves
    at the noise levels :func:`~pyg_mmrec.nn.mdmns_noise_levels`
    (the "multi-level negatives"). Scores sum the dot products of all
    branches.

    Differences from the original code, and why:

    * **Guidance** (the original builds a new, randomly initialised
      guidance network at every call and never trains it, so the denoiser
      is trained on random projections of :math:`\mathbf{x}_t` and run on
      clean rows): by default one guidance network is registered and trained
      with the denoisers (shared by the modalities), as the paper
      describes. :obj:`faithful=True`
      reproduces the fresh random network and the original's constant
      second reconstruction term. The guidance graph is never a dense
      :math:`(B + I)^2` matrix, and degrees made negative by the noise are
      clamped (see :class:`~pyg_mmrec.nn.BipartiteGuidance`).
    * **InfoNCE anchors**: the softmax of every InfoNCE runs over all users
      or all items, exactly, in chunks (never an :math:`N \times N`
      matrix). With :obj:`cl_anchors="batch"` (default) the anchors of the
      multi-level loss are the batch's distinct users and positive items
      (each once), as DiffMM's own contrast anchors on the batch, instead
      of all users and items at every step (the original's cost: about
      2 TFLOP per batch on TikTok with :math:`d = 512`).
      :obj:`cl_anchors="all"` is the original, and the default with
      :obj:`faithful=True`.
    * :obj:`mixed_precision=True` (ours) runs the large matrix products in
      :obj:`bfloat16`.
    * The two zero-noise levels for :math:`T = 5` are the same detached copy
      and are computed once (the loss value is unchanged).
    * The generated graphs are rebuilt block by block over users; the
      original densifies all user rows.
    * BPR is a mean over the batch (the original divides the last, smaller
      batch by the nominal batch size; :obj:`faithful=True` does so too,
      taking the largest batch seen as the nominal size: the trainer's
      batches are full but for the last of an epoch).
    * The denoisers' optimiser state is checkpointed (by the trainer, with
      the stage), so a resumed run continues exactly.
    * Model selection is on validation by default; the original reports
      the best epoch on the test set (:obj:`select_on="test"` in the
      trainer reproduces that, labelled).
    * The original's :obj:`cl_method=0` runs still compute and discard the
      multi-level loss; here only the selected loss is computed. As in the
      original, with :obj:`cl_method=0` no loss reaches the fused branch, so
      the modality weights keep their initial values (the branch still
      adds to the scores).

    **Any number of modalities** (at least one): one denoiser, branch and
    generated graph per modality. With a single modality, its guide is its
    own features, and :obj:`cl_method=0` has no pair of modality views to
    contrast: its :obj:`"cl"` term is then a constant zero tensor, kept
    so that the logs have the same terms whatever the dataset (a warning at
    construction says so); :obj:`cl_method=1` has a contrastive loss on
    one modality too.

    **Mini-batch training** (:obj:`sampler="neighbor"`; see
    :mod:`~pyg_mmrec.models.diffmm_subgraph`): subgraphs sampled over the
    training interactions and every :math:`\mathbf{G}_m` (as it is when
    the epoch's batches start), and the branches above on the subgraph's
    nodes with the full graphs' weights. A modality branch's rows read at
    most :math:`L + 2` hops of :math:`\mathbf{A}` (one of
    :math:`\mathbf{G}_m`), the fused branch's :math:`L + 4`
    (:obj:`subgraph_hops` is :math:`L + 2`): beyond the sampled hops, a
    node aggregates its sampled neighbours only. Also local to the
    subgraph: the regulariser (its rows of the ID tables, not every row),
    the softmaxes of the contrastive terms (over its users and items; the
    anchors stay the batch's, or its nodes with :obj:`cl_anchors="all"`),
    and the noisy views' noise (drawn in its item order). The whole graph
    as a subgraph gives the full-graph losses.

    On CPU, glibc's allocator fragments under this model's many large
    temporaries (TikTok, :math:`d = 512`: 2.9 GB resident for a 1 GB live
    peak); run it under jemalloc with
    :obj:`MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1` (1.5 GB, and
    faster; 1.3 GB with :obj:`offload_dir`), as the README shows.

    Args:
        data (HeteroData): The dataset; it must carry item features.
        embedding_dim (int): :obj:`latdim`. (default: :obj:`64`)
        num_layers (int): :obj:`gnn_layer`, the :math:`L` of the branch
            encoders. (default: :obj:`1`)
        trans (int): Feature projection: :obj:`0` bias-free matrices +
            LeakyReLU(0.2), :obj:`1` linear layers with bias, :obj:`2` image
            as 0 and text as 1 (audio as 0). (default: :obj:`0`)
        reg_weight (float): :obj:`reg`. (default: :obj:`1e-5`)
        ssl_weight (float): :obj:`ssl_reg`. (default: :obj:`1e-2`)
        temperature (float): :obj:`temp`. (default: :obj:`0.5`)
        keep_rate (float): Entry keep rate of the generated graphs.
            (default: :obj:`0.5`)
        ris_lambda (float): :math:`\lambda_r`. (default: :obj:`0.5`)
        ris_adj_lambda (float): :math:`\lambda_a`. (default: :obj:`0.2`)
        cl_method (int): :obj:`0` (view contrast) or :obj:`1`
            (multi-level). (default: :obj:`0`)
        cl_anchors (str, optional): :obj:`"batch"` or :obj:`"all"` (see
            above). (default: :obj:`"all"` with :obj:`faithful=True`, else
            :obj:`"batch"`)
        num_steps (int): Diffusion steps :math:`T`. (default: :obj:`5`)
        noise_scale (float): (default: :obj:`0.1`)
        noise_min (float): (default: :obj:`1e-4`)
        noise_max (float): (default: :obj:`0.02`)
        denoiser_hidden (int): :obj:`dims`. (default: :obj:`1000`)
        denoiser_time_dim (int): :obj:`d_emb_size`. (default: :obj:`10`)
        denoiser_dropout (float): (default: :obj:`0.5`)
        denoiser_lr (float): (default: :obj:`1e-3`)
        denoiser_batch_size (int): User rows per denoiser step (also the
            block size of the graph rebuild). (default: :obj:`1024`)
        rebuild_k (int): Generated items per user. (default: :obj:`1`)
        e_loss (float): Weight :math:`e` of the modality signal injection.
            (default: :obj:`0.1`)
        guidance_dim (int): :obj:`guide_fused_hidden_dim`.
            (default: :obj:`64`)
        chunk_size (int): Anchor rows per InfoNCE chunk. (default:
            :obj:`4096`)
        mixed_precision (bool): Run the large matrix products (denoiser
            training and inference, InfoNCE logits) in :obj:`bfloat16`
            (autocast; parameters, the loss and the gradient accumulation
            stay :obj:`float32`). About twice as fast on CPUs with
            :obj:`avx512_bf16` or AMX, much slower on CPUs without them.
            (default: :obj:`False`)
        offload_dir (str, optional): If set, the trainer keeps the
            diffusion stage (the denoisers, the guidance network and their
            optimiser state) in a file in this folder (see
            :class:`~pyg_mmrec.train.DiskOffload`) whenever it is idle:
            during the recommender's batches and the evaluation. Results
            are unchanged, bit for bit; peak memory
            drops by their size (320 MiB on TikTok, 840 MiB at Sports'
            size) at the cost of writing and reading them two or three
            times per epoch (after the graph rebuild and per checkpoint).
            (default: :obj:`None`)
        faithful (bool): Reproduce the original's untrained, freshly
            initialised guidance and its constant second reconstruction
            term, and in the multi-level loss (:obj:`cl_method=1`) its
            anchors over all users and items and its BPR divided by the
            nominal batch size. (default: :obj:`False`)
    """
    requires_features = True
    supports_subgraph = True
    repr_settings = ('modalities', 'embedding_dim', 'cl_method', 'faithful')

    def __init__(
        self,
        data: HeteroData,
        embedding_dim: int = 64,
        num_layers: int = 1,
        trans: int = 0,
        reg_weight: float = 1e-5,
        ssl_weight: float = 1e-2,
        temperature: float = 0.5,
        keep_rate: float = 0.5,
        ris_lambda: float = 0.5,
        ris_adj_lambda: float = 0.2,
        cl_method: int = 0,
        cl_anchors: Optional[str] = None,
        num_steps: int = 5,
        noise_scale: float = 0.1,
        noise_min: float = 1e-4,
        noise_max: float = 0.02,
        denoiser_hidden: int = 1000,
        denoiser_time_dim: int = 10,
        denoiser_dropout: float = 0.5,
        denoiser_lr: float = 1e-3,
        denoiser_batch_size: int = 1024,
        rebuild_k: int = 1,
        e_loss: float = 0.1,
        guidance_dim: int = 64,
        chunk_size: int = 4096,
        mixed_precision: bool = False,
        offload_dir: Optional[str] = None,
        faithful: bool = False,
    ):
        super().__init__(data)
        feats = require_features(data, type(self).__name__)
        self.check_settings(trans, cl_method)
        if cl_anchors is None:
            cl_anchors = 'all' if faithful else 'batch'
        if cl_anchors not in ('batch', 'all'):
            raise ValueError(f"cl_anchors must be 'batch' or 'all', "
                             f"got {cl_anchors!r}")
        self.modalities: List[str] = list(feats)
        self.embedding_dim, self.trans = embedding_dim, trans
        self.ssl_weight, self.temperature = ssl_weight, temperature
        self.ris_lambda, self.ris_adj_lambda = ris_lambda, ris_adj_lambda
        self.cl_method, self.cl_anchors = cl_method, cl_anchors
        self.chunk_size, self.faithful = chunk_size, faithful
        self.mixed_precision = mixed_precision
        self.noise_levels = mdmns_noise_levels(num_steps)

        self.build_diffusion_recommender(
            data, feats, embedding_dim=embedding_dim, num_layers=num_layers,
            trans=trans, guidance='random' if faithful else 'trained',
            guidance_dim=guidance_dim, num_steps=num_steps,
            noise_scale=noise_scale, noise_min=noise_min,
            noise_max=noise_max, denoiser_hidden=denoiser_hidden,
            denoiser_time_dim=denoiser_time_dim,
            denoiser_dropout=denoiser_dropout, denoiser_lr=denoiser_lr,
            denoiser_batch_size=denoiser_batch_size, rebuild_k=rebuild_k,
            keep_rate=keep_rate, e_loss=e_loss, reg_weight=reg_weight)
        self.offload_dir = offload_dir
        # The denoisers' fixed inputs during the diffusion stage.
        self._denoiser_inputs: Optional[Tuple] = None
        self.warn_if_nothing_to_contrast(data, 'the multi-level loss')
        self.reset_parameters()

    # Recommender ---------------------------------------------------------
    def branches(self, feats: Optional[Dict[str, Tensor]] = None,
                 subgraph: Optional[Subgraph] = None
                 ) -> Dict[str, Tuple[Tensor, Tensor]]:
        r"""The :obj:`(user, item)` embeddings of the fused branch
        (:obj:`"fused"`) and of every modality branch, from the projected
        features :obj:`feats` (computed by :obj:`features` if not
        given), of every node or of :obj:`subgraph`'s."""
        e_u, e_i = self.node_embeddings(subgraph)
        e_id = torch.cat([e_u, e_i])
        blocks = self.core.blocks(subgraph)
        ids = blocks.adj_blocks(e_u, e_i)  # shared by every branch
        if feats is None:
            feats = self.features(None if subgraph is None
                                  else subgraph.item_id)
        hidden = {}
        for m in self.modalities:
            adj, adj_t = self.core.generated(m, subgraph)
            hidden[m] = blocks.modality_branch(
                F.normalize(feats[m]), ids, sparse_mm(adj, e_id, adj_t),
                self.ris_adj_lambda)
        weight = torch.softmax(self.modal_weight, dim=0)
        mixed = sum(w * hidden[m][blocks.num_users:]  # the item halves only
                    for w, m in zip(weight, self.modalities))
        id_graph = torch.cat([ids['uu'] + ids['ui'], ids['iu'] + ids['ii']])
        fused = blocks.modality_branch(F.normalize(mixed), ids, id_graph,
                                       self.ris_adj_lambda)
        out = {FUSED: self.readout(fused, blocks)}
        out.update({m: self.readout(hidden[m], blocks)
                    for m in self.modalities})
        return out

    def encode(self, subgraph: Optional[Subgraph] = None
               ) -> Tuple[Tensor, Tensor]:
        r"""All branches concatenated, so that a dot product is the sum of
        the branches' scores."""
        out = self.branches(subgraph=subgraph)
        return (torch.cat([u for u, _ in out.values()], dim=1),
                torch.cat([i for _, i in out.values()], dim=1))

    def contrastive_loss(self, out: Dict[str, Tuple[Tensor, Tensor]],
                         feats: Dict[str, Tensor], batch: BPRBatch) -> Tensor:
        r"""The :obj:`ssl_weight`-weighted contrastive term of
        :obj:`cl_method` (:func:`~pyg_mmrec.nn.view_pair_info_nce` of
        :meth:`~pyg_mmrec.models.DiffMMCore.views`, or
        :func:`~pyg_mmrec.nn.multi_level_info_nce`), always a scalar
        tensor: with :obj:`cl_method=0` and a single modality (no pair to
        contrast) a constant zero."""
        kwargs = dict(temperature=self.temperature, chunk_size=self.chunk_size,
                      matmul_dtype=(torch.bfloat16 if self.mixed_precision
                                    else None))
        user, pos, _ = batch.node_index()
        if self.cl_method == 0:
            if len(self.modalities) < 2:  # nothing to contrast
                return self.item_embedding.weight.new_zeros(())
            sub = batch.subgraph
            views = self.core.views(self.encoder, self.node_embeddings(sub)[0],
                                    feats, sub)
            loss = view_pair_info_nce(list(views.values()), user, pos,
                                      **kwargs)
        else:
            users = items = None
            if self.cl_anchors == 'batch':
                users, items = user.unique(), pos.unique()
            loss = multi_level_info_nce(
                out[FUSED], [out[m] for m in self.modalities],
                self.noise_levels, users, items, **kwargs)
        return self.ssl_weight * loss

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        sub = batch.subgraph  # once per batch, shared with the views:
        feats = self.features(None if sub is None else sub.item_id)
        out = self.branches(feats, sub)
        user, pos, neg = batch.node_index()
        parts = []
        for m in self.modalities:
            user_emb, item_emb = out[m]
            u = user_emb.index_select(0, user)
            parts.append(bpr_loss(
                (u * item_emb.index_select(0, pos)).sum(-1),
                (u * item_emb.index_select(0, neg)).sum(-1)))
        bpr = functools.reduce(operator.add, parts)  # a tensor, in order
        if self.faithful:  # the original's sum over the nominal batch size
            bpr = self.nominal_batch_bpr(bpr, batch.user.numel())
        terms = {'bpr': bpr}
        terms.update(self.embedding_reg_terms(sub))
        if self.ssl_weight > 0:
            terms['cl'] = self.contrastive_loss(out, feats, batch)
        return terms
