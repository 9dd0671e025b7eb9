r"""The modality diffusion of DiffMM and MDMNS: their shared modules, the
stage that trains the modality denoisers and the generated graphs they give
(a mixin of :class:`~pyg_mmrec.models.DiffMM` and
:class:`~pyg_mmrec.models.MDMNS`)."""
import logging
from typing import Dict, Mapping, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from ..nn import (
    GaussianDiffusion,
    LightGCNEncoder,
    ModalityDiffusion,
    ModalityFeatures,
)
from .base import Stage
from .diffmm_core import DiffMMCore
from .diffmm_subgraph import GraphBlocks

log = logging.getLogger(__name__)


class DiffusionParts:
    r"""The diffusion stage of DiffMM and MDMNS, their denoisers' inputs and
    loss, and the generated graphs :math:`\mathbf{G}_m` (see
    :class:`~pyg_mmrec.models.MDMNS`, "Diffusion")."""
    @staticmethod
    def check_settings(trans: int, cl_method: int) -> None:
        r"""Refuses a :obj:`trans` other than 0, 1, 2 and a :obj:`cl_method`
        other than 0, 1."""
        if trans not in (0, 1, 2):
            raise ValueError(f"trans must be 0, 1 or 2, got {trans}")
        if cl_method not in (0, 1):
            raise ValueError(f"cl_method must be 0 or 1, got {cl_method}")

    def warn_if_nothing_to_contrast(self, data: HeteroData,
                                    alternative: str) -> None:
        r"""Warns that :obj:`cl_method=0`, which contrasts pairs of modality
        views, has nothing to contrast on a one-modality dataset (its
        :obj:`"cl"` term is 0); :obj:`alternative` says what
        :obj:`cl_method=1` is."""
        if (self.cl_method == 0 and self.ssl_weight > 0
                and len(self.modalities) < 2):
            log.warning(
                "%s: cl_method=0 contrasts the views of pairs of "
                "modalities, and dataset '%s' has one (%s): its 'cl' term "
                "is 0; cl_method=1 (%s) works with one modality",
                type(self).__name__, getattr(data, 'name', '?'),
                self.modalities[0], alternative)

    @property
    def subgraph_hops(self) -> int:
        r""":math:`L + 2`, the hops a modality branch's rows read."""
        return self.encoder.num_layers + 2

    def build_diffusion_recommender(
            self, data: HeteroData, feats: Mapping[str, Tensor], *,
            embedding_dim: int, num_layers: int, trans: int, guidance: str,
            guidance_dim: int, num_steps: int, noise_scale: float,
            noise_min: float, noise_max: float, denoiser_hidden: int,
            denoiser_time_dim: int, denoiser_dropout: float,
            denoiser_lr: float, denoiser_batch_size: int, rebuild_k: int,
            keep_rate: float, e_loss: float, reg_weight: float) -> None:
        r"""Builds the modules both share, in this order: the ID tables
        :obj:`user_embedding` and :obj:`item_embedding`, the projected
        features :obj:`features` (:obj:`trans` 0: bias-free matrices and
        LeakyReLU, 1: linear layers, 2: text as 1 and the others as 0), the
        fusion weights :obj:`modal_weight`, the sum-pooled :obj:`encoder`,
        the denoisers :obj:`diffusion` (:class:`~pyg_mmrec.nn.\
ModalityDiffusion` with :obj:`guidance`) and the graphs, stage and
        regulariser :obj:`core` (:class:`~pyg_mmrec.models.DiffMMCore`).
        Reads :obj:`self.modalities` and :obj:`self.mixed_precision`."""
        self.user_embedding = torch.nn.Embedding(self.num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(self.num_items, embedding_dim)
        linear = {m: trans == 1 or (trans == 2 and m == 'text')
                  for m in feats}
        #: The item features; :obj:`features()` is :math:`\mathbf{F}_m`.
        self.features = ModalityFeatures(
            feats, embedding_dim,
            projection={m: 'linear' if linear[m] else 'matrix'
                        for m in feats},
            activation={m: None if linear[m] else 'leaky_relu'
                        for m in feats})
        self.modal_weight = torch.nn.Parameter(
            torch.full((len(feats), ), 1.0 / len(feats)))
        self.encoder = LightGCNEncoder(num_layers, combine='sum',
                                       symmetric=True)
        #: The denoisers.
        self.diffusion = ModalityDiffusion(
            self.num_items, self.modalities, embedding_dim, denoiser_hidden,
            denoiser_time_dim, denoiser_dropout,
            GaussianDiffusion(num_steps, noise_scale, noise_min, noise_max),
            guidance_dim, guidance=guidance, e_loss=e_loss,
            mixed_precision=self.mixed_precision)
        #: The training and generated graphs, the stage, the regulariser.
        self.core = DiffMMCore(data, self.modalities, self.diffusion.generate,
                               rebuild_k, keep_rate, denoiser_lr,
                               denoiser_batch_size, reg_weight)

    def reset_parameters(self):
        r"""Resets the modules of :meth:`build_diffusion_recommender`: the ID
        tables Xavier-uniform, the fusion weights uniform."""
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        self.features.reset_parameters()
        with torch.no_grad():
            self.modal_weight.fill_(1.0 / len(self.modalities))
        self.diffusion.reset_parameters()

    def readout(self, h: Tensor, blocks: GraphBlocks
                ) -> Tuple[Tensor, Tensor]:
        r""":math:`\mathbf{Z} = \sum_{l=0}^{L} \hat{\mathbf{A}}^l \mathbf{H}
        + \lambda_r \, \mathrm{norm}(\mathbf{H})` (:obj:`ris_lambda`) as
        :obj:`(user, item)` rows."""
        z = torch.add(self.encoder(h, blocks.adj), F.normalize(h),
                      alpha=self.ris_lambda)
        return blocks.split(z)

    def nominal_batch_bpr(self, bpr: Tensor, batch_size: int) -> Tensor:
        r"""The originals' BPR, a sum over the batch divided by the nominal
        batch size, from the mean :obj:`bpr`: the largest batch seen is
        the nominal size (the trainer's batches are full but for the last
        of an epoch)."""
        nominal = max(getattr(self, '_nominal_batch_size', 0), batch_size)
        self._nominal_batch_size = nominal
        return bpr * (batch_size / nominal)

    def stages(self) -> Tuple[Stage, ...]:
        r"""The diffusion stage, run before the recommender in every epoch:
        one pass of every denoiser (and the guidance network) over all user
        rows, then the generated graphs are rebuilt."""
        # One Adam over the denoisers and the guidance equals the original's
        # one Adam per part: Adam is elementwise and the parts share no
        # parameter. One backward per denoiser, as the original: the
        # guidance's gradients add up in the same order. The generated
        # graphs (in the core) are not offloaded: the recommender reads them.
        modules = list(self.diffusion.denoisers.values())
        if self.diffusion.guidance is not None:
            modules.append(self.diffusion.guidance)
        return (self.core.stage('diffusion', modules, self.denoiser_loss,
                                before=self._prepare_denoiser_inputs,
                                after=self.rebuild_graphs,
                                backward_per_term=True,
                                offload_dir=self.offload_dir), )

    @torch.no_grad()
    def denoiser_inputs(self) -> Tuple:
        r"""The projected features, their guides
        (:meth:`~pyg_mmrec.nn.ModalityDiffusion.guides`) and the item ID
        embeddings, detached (fixed during the diffusion stage)."""
        feats = self.features()
        return (feats, self.diffusion.guides(feats),
                self.item_embedding.weight.detach())

    def _prepare_denoiser_inputs(self) -> None:
        self._denoiser_inputs = self.denoiser_inputs()

    def denoiser_loss(self, users: Tensor) -> Dict[str, Tensor]:
        r"""The loss :math:`\mathcal{L}_m` of every modality's denoiser on
        the interaction rows of :obj:`users` (the stage's batch)."""
        feats, guides, item_emb = (self._denoiser_inputs or
                                   self.denoiser_inputs())
        x0 = self.core.rows(users)
        return {m: self.diffusion.loss(m, x0, guides[m], feats[m], item_emb)
                for m in self.modalities}

    def rebuild_graphs(self) -> None:
        r"""Regenerates the generated graphs from the current denoisers
        (see :meth:`~pyg_mmrec.models.DiffMMCore.rebuild`)."""
        self.core.rebuild()
        self._denoiser_inputs = None

    def generated_graph(self, modality: str) -> Tuple[Tensor, Tensor]:
        r"""The generated graph :math:`\mathbf{G}_m` and its transpose
        (generated first if no epoch has run)."""
        return self.core.graph(modality)
