"""DiffMM."""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import require_features
from ..loader import BPRBatch, Subgraph
from ..nn import info_nce, sparse_mm, view_pair_info_nce
from ..nn.losses import bpr_loss
from .base import Recommender
from .diffmm_subgraph import SubgraphParts
from .mdmns_parts import DiffusionParts
from .registry import register_model


@register_model('diffmm')
class DiffMM(DiffusionParts, SubgraphParts, Recommender):
    r"""DiffMM from `"DiffMM: Multi-Modal Diffusion Model for
    Recommendation" <https://arxiv.org/abs/2406.11781>`_ (MM 2024), the
    parent of :class:`~pyg_mmrec.models.MDMNS` and
    :class:`~pyg_mmrec.models.GenRec`.

    **Diffusion** (the :obj:`"diffusion"` stage, before the recommender's
    batches in every epoch; :class:`~pyg_mmrec.nn.ModalityDiffusion` with
    :obj:`guidance="none"`): per modality :math:`m` a denoiser
    reconstructs users' training rows :math:`\mathbf{x}_0` from their noisy
    :math:`\mathbf{x}_t` with the SNR-weighted MSE plus :obj:`e_loss` times
    the modality signal injection :math:`\mathrm{MSE}(\hat{\mathbf{x}}_0
    \mathbf{F}_m, \mathbf{x}_0 \mathbf{E}_i)`; after the stage each user's
    top :obj:`rebuild_k` denoised items are the edges of the generated
    graph :math:`\mathbf{G}_m` (self-looped, GCN-normalised, entries kept
    with :obj:`keep_rate`; :class:`~pyg_mmrec.models.DiffMMCore`).

    **Recommender.** With :math:`\hat{\mathbf{A}}` the self-looped
    GCN-normalised training graph and :math:`\bar{\mathbf{F}}_m` the
    L2-normalised projected features, each modality gives

    .. math::
        \mathbf{H}_m = \hat{\mathbf{A}}[\mathbf{E}_u; \bar{\mathbf{F}}_m] +
        \hat{\mathbf{A}}[(\hat{\mathbf{A}}[\mathbf{E}_u;
        \bar{\mathbf{F}}_m])_u; \mathbf{E}_i] + \lambda_a \mathbf{G}_m
        [\mathbf{E}_u; \mathbf{E}_i],

    fused with learned softmax weights, :math:`\mathbf{H} = \sum_m
    \mathrm{softmax}(\mathbf{w})_m \mathbf{H}_m`, and read out as
    :math:`\mathbf{Z} = \sum_{l=0}^{L} \hat{\mathbf{A}}^l \mathbf{H} +
    \lambda_r \mathrm{norm}(\mathbf{H})`; scores are
    :math:`\langle \mathbf{z}_u, \mathbf{z}_i \rangle`. The loss is BPR on
    :math:`\mathbf{Z}`, :obj:`reg_weight` times the squared norm of the ID
    tables, and :obj:`ssl_weight` times a contrast of the views
    :math:`\mathbf{V}_m = \sum_l \hat{\mathbf{A}}^l \mathbf{G}_m
    [\mathbf{E}_u; \bar{\mathbf{F}}_m]` (InfoNCE over all users or items,
    anchored on the batch's users and positives, duplicates counted):
    :obj:`cl_method=0` contrasts every pair of modality views
    (:func:`~pyg_mmrec.nn.view_pair_info_nce`), :obj:`cl_method=1` the
    fused :math:`\mathbf{Z}` against each :math:`\mathbf{V}_m`.

    **What its descendants change.** MDMNS guides the denoisers with the
    other modalities' features, adds per-modality outputs to the fused one
    (scores sum four branches) and replaces :obj:`cl_method=1` by
    full-matrix InfoNCE plus noisy multi-level copies; GenRec-V1 replaces
    the Gaussian diffusion by one bit-flip diffusion with a Transformer
    denoiser and one generated graph, and the recommender by an MGCN-style
    encoder.

    **The diffusion loss's scale.** The SNR weights of the default
    schedule are :math:`(1, 8326, 760, 285, 150)` for :math:`t = 0..4`,
    so the denoisers' loss is in the thousands, dominated by :math:`t = 1`
    draws, and the modality signal injection is a small part of it (as in
    the original). It never reaches the recommender: the denoisers train in
    their own stage with their own Adam (invariant to the loss's scale),
    and the stage's terms are logged per modality in the run's history.

    Differences from the reference code (``HKUDS/DiffMM``):

    * Model selection is on validation by default; the original reports
      the best epoch on the test set (the trainer's
      :obj:`select_on="test"` reproduces it, labelled) and never reads its
      validation matrix.
    * BPR is a mean over the batch (the original divides the last, smaller
      batch by the nominal size; :obj:`faithful=True` does so too).
    * Only the selected contrastive loss is computed (the original computes
      both and discards one).
    * Any number of modalities; with one, :obj:`cl_method=0` has no pair to
      contrast and its :obj:`"cl"` term is 0 (a warning says so).
    * The generated graphs are rebuilt block by block over users with
      :func:`torch.topk` (the original appends to Python lists); the
      denoisers' optimiser state is checkpointed (exact resume);
      :obj:`mixed_precision=True` (ours) runs the large products in
      :obj:`bfloat16`.
    * Mini-batch training (:obj:`sampler="neighbor"`, ours; see
      :mod:`~pyg_mmrec.models.diffmm_subgraph`): the branches on a sampled
      subgraph of the training and generated graphs with the full graphs'
      weights; the regulariser and the contrastive softmaxes are then local
      to the subgraph. The whole graph as a subgraph gives the full-graph
      losses.

    Args:
        data (HeteroData): The dataset; it must carry item features.
        embedding_dim (int): :obj:`latdim`. (default: :obj:`64`)
        num_layers (int): :obj:`gnn_layer` :math:`L`. (default: :obj:`1`)
        trans (int): Feature projection: :obj:`0` bias-free matrices +
            LeakyReLU(0.2), :obj:`1` linear layers, :obj:`2` text as 1 and
            the others as 0. (default: :obj:`0`)
        reg_weight (float): :obj:`reg`. (default: :obj:`1e-5`)
        ssl_weight (float): :obj:`ssl_reg`. (default: :obj:`1e-2`)
        temperature (float): :obj:`temp`. (default: :obj:`0.5`)
        keep_rate (float): Entry keep rate of the generated graphs.
            (default: :obj:`0.5`)
        ris_lambda (float): :math:`\lambda_r`. (default: :obj:`0.5`)
        ris_adj_lambda (float): :math:`\lambda_a`. (default: :obj:`0.2`)
        cl_method (int): :obj:`0` (modality pairs) or :obj:`1` (fused
            against each modality). (default: :obj:`0`)
        num_steps (int): Diffusion steps :math:`T`. (default: :obj:`5`)
        noise_scale (float): (default: :obj:`0.1`)
        noise_min (float): (default: :obj:`1e-4`)
        noise_max (float): (default: :obj:`0.02`)
        denoiser_hidden (int): :obj:`dims`. (default: :obj:`1000`)
        denoiser_time_dim (int): :obj:`d_emb_size`. (default: :obj:`10`)
        denoiser_dropout (float): (default: :obj:`0.5`)
        denoiser_lr (float): (default: :obj:`1e-3`)
        denoiser_batch_size (int): User rows per denoiser step (and per
            block of the graph rebuild). (default: :obj:`1024`)
        rebuild_k (int): Generated items per user. (default: :obj:`1`)
        e_loss (float): Weight of the modality signal injection.
            (default: :obj:`0.1`)
        chunk_size (int): Anchor rows per InfoNCE chunk. (default:
            :obj:`4096`)
        mixed_precision (bool): :obj:`bfloat16` matrix products (see
            :class:`~pyg_mmrec.models.MDMNS`). (default: :obj:`False`)
        offload_dir (str, optional): Keep the idle denoisers on disk (see
            :class:`~pyg_mmrec.models.MDMNS`). (default: :obj:`None`)
        faithful (bool): Divide the last batch's BPR by the nominal batch
            size, as the original. (default: :obj:`False`)
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
        chunk_size: int = 4096,
        mixed_precision: bool = False,
        offload_dir: Optional[str] = None,
        faithful: bool = False,
    ):
        super().__init__(data)
        feats = require_features(data, type(self).__name__)
        self.check_settings(trans, cl_method)
        self.modalities: List[str] = list(feats)
        self.embedding_dim, self.trans = embedding_dim, trans
        self.ssl_weight, self.temperature = ssl_weight, temperature
        self.ris_lambda, self.ris_adj_lambda = ris_lambda, ris_adj_lambda
        self.cl_method, self.chunk_size = cl_method, chunk_size
        self.faithful, self.mixed_precision = faithful, mixed_precision
        self.build_diffusion_recommender(
            data, feats, embedding_dim=embedding_dim, num_layers=num_layers,
            trans=trans, guidance='none', guidance_dim=0,
            num_steps=num_steps, noise_scale=noise_scale,
            noise_min=noise_min, noise_max=noise_max,
            denoiser_hidden=denoiser_hidden,
            denoiser_time_dim=denoiser_time_dim,
            denoiser_dropout=denoiser_dropout, denoiser_lr=denoiser_lr,
            denoiser_batch_size=denoiser_batch_size, rebuild_k=rebuild_k,
            keep_rate=keep_rate, e_loss=e_loss, reg_weight=reg_weight)
        self.offload_dir = offload_dir
        self._denoiser_inputs: Optional[Tuple] = None
        self.warn_if_nothing_to_contrast(data,
                                         'the fused output against each view')
        self.reset_parameters()

    def fused(self, feats: Optional[Dict[str, Tensor]] = None,
              subgraph: Optional[Subgraph] = None) -> Tuple[Tensor, Tensor]:
        r"""The :obj:`(user, item)` rows of :math:`\mathbf{Z}` from the
        projected features :obj:`feats` (computed if not given), of every
        node or of :obj:`subgraph`'s."""
        e_u, e_i = self.node_embeddings(subgraph)
        e_id = torch.cat([e_u, e_i])
        blocks = self.core.blocks(subgraph)
        ids = blocks.adj_blocks(e_u, e_i)  # shared by every modality
        if feats is None:
            feats = self.features(None if subgraph is None
                                  else subgraph.item_id)
        weight = torch.softmax(self.modal_weight, dim=0)
        mixed = None
        for w, m in zip(weight, self.modalities):
            adj, adj_t = self.core.generated(m, subgraph)
            h = w * blocks.modality_branch(
                F.normalize(feats[m]), ids, sparse_mm(adj, e_id, adj_t),
                self.ris_adj_lambda)
            mixed = h if mixed is None else mixed + h
        return self.readout(mixed, blocks)

    def encode(self, subgraph: Optional[Subgraph] = None
               ) -> Tuple[Tensor, Tensor]:
        return self.fused(subgraph=subgraph)

    def contrastive_loss(self, fused: Tuple[Tensor, Tensor],
                         feats: Dict[str, Tensor], batch: BPRBatch) -> Tensor:
        r"""The :obj:`ssl_weight`-weighted contrast of :obj:`cl_method`
        (a constant zero with :obj:`cl_method=0` and one modality)."""
        if self.cl_method == 0 and len(self.modalities) < 2:
            return self.item_embedding.weight.new_zeros(())
        kwargs = dict(temperature=self.temperature, chunk_size=self.chunk_size,
                      matmul_dtype=(torch.bfloat16 if self.mixed_precision
                                    else None))
        user, pos, _ = batch.node_index()
        sub = batch.subgraph
        views = self.core.views(self.encoder, self.node_embeddings(sub)[0],
                                feats, sub)
        if self.cl_method == 0:
            loss = view_pair_info_nce(list(views.values()), user, pos,
                                      **kwargs)
        else:
            (z_u, z_i), parts = fused, []
            for v_u, v_i in views.values():
                parts += [info_nce(z_u, v_u, index=user, **kwargs),
                          info_nce(z_i, v_i, index=pos, **kwargs)]
            loss = parts[0]
            for part in parts[1:]:
                loss = loss + part
        return self.ssl_weight * loss

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        sub = batch.subgraph
        feats = self.features(None if sub is None else sub.item_id)
        z_u, z_i = fused = self.fused(feats, sub)
        user, pos, neg = batch.node_index()
        u = z_u.index_select(0, user)
        bpr = bpr_loss((u * z_i.index_select(0, pos)).sum(-1),
                       (u * z_i.index_select(0, neg)).sum(-1))
        if self.faithful:
            bpr = self.nominal_batch_bpr(bpr, batch.user.numel())
        terms = {'bpr': bpr}
        terms.update(self.embedding_reg_terms(sub))
        if self.ssl_weight > 0:
            terms['cl'] = self.contrastive_loss(fused, feats, batch)
        return terms
