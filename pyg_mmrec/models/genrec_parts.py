r"""GenRec-V1's generated graph :math:`\mathbf{G}`: the flip denoiser's
stage and the generation (a mixin of :class:`~pyg_mmrec.models.GenRec`)."""
from typing import Dict, List, Tuple

import torch
from torch import Tensor

from ..nn import interest_debias
from ..nn.bitflip import candidate_rows, top_generated
from .base import Stage


class GenerationParts:
    r"""GenRec-V1's denoiser stage and the generation of
    :math:`\mathbf{G}` from the trained denoiser (see
    :class:`~pyg_mmrec.models.GenRec`, "Generated graph")."""
    def stages(self) -> Tuple[Stage, ...]:
        r"""The denoiser stage (none without the generated graph): one pass
        over all users' rows, then :math:`\mathbf{G}` is regenerated."""
        if self.denoiser is None:
            return ()
        return (self.core.stage('denoiser', [self.denoiser],
                                self.denoiser_loss), )

    def denoiser_loss(self, users: Tensor) -> Dict[str, Tensor]:
        r"""The flip-denoising loss on the training rows of :obj:`users`."""
        x0 = self.core.rows(users)
        return {'flip': self.process.loss(self.denoiser, x0)}

    @torch.no_grad()
    def generate_block(self, x0: Tensor, k: int) -> Tensor:
        r"""The :obj:`k` generated items :obj:`[B, k]` (:obj:`-1`: none) of
        the training rows :obj:`x0` :obj:`[B, I]` (the core's generation),
        with the denoiser in eval mode (train mode with
        :obj:`faithful=True`, as the original)."""
        was_training = self.denoiser.training
        self.denoiser.train(self.faithful)
        try:
            x, p = self.process.p_sample(self.denoiser, x0,
                                         self.sampling_steps)
        finally:
            self.denoiser.train(was_training)
        gen = candidate_rows(x0, x, p, self.gen_topk)
        if self.interest_debias:
            gen = interest_debias(x0, gen, self.clusters, self.sample_ratio)
        return top_generated(gen, p, k, keep_empty=self.faithful)

    def _generate(self, key: str, x0: Tensor, k: int) -> Tensor:
        return self.generate_block(x0, k)  # G's generation (one key)

    def rebuild_graph(self) -> None:
        r"""Regenerates every user's items (see
        :meth:`~pyg_mmrec.models.DiffMMCore.rebuild`)."""
        self.core.rebuild()

    def generated_keys(self) -> List[str]:
        r"""The generated graphs the recommender reads: :math:`\mathbf{G}`,
        none without it (:obj:`use_generated_graph=False`)."""
        return [] if self.denoiser is None else list(self.core.keys)

    def generated_graph(self) -> Tuple[Tensor, Tensor]:
        r""":math:`\mathbf{G}` and its transpose (generated first if no
        epoch has run)."""
        return self.core.graph('items')
