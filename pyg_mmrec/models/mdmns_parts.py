r"""MDMNS's diffusion: the stage that trains its modality denoisers and
the generated graphs they give (a mixin of
:class:`~pyg_mmrec.models.MDMNS`)."""
from typing import Dict, Tuple

import torch
from torch import Tensor

from .base import Stage


class DiffusionParts:
    r"""MDMNS's diffusion stage, its denoisers' inputs and loss, and the
    generated graphs :math:`\mathbf{G}_m` (see
    :class:`~pyg_mmrec.models.MDMNS`, "Diffusion")."""
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
