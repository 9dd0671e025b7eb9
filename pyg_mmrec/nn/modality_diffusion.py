r"""The modality-aware graph diffusion of DiffMM and MDMNS: per-modality
denoisers of users' interaction rows."""
from typing import Dict, List, Mapping, Sequence

import torch
from torch import Tensor

from .denoiser import BipartiteGuidance, Denoiser
from .diffusion import GaussianDiffusion

#: The denoisers' inputs (see :class:`ModalityDiffusion`).
GUIDANCE = ('trained', 'random', 'none')


class ModalityDiffusion(torch.nn.Module):
    r"""One :class:`Denoiser` per modality :math:`m` reconstructs users'
    interaction rows :math:`\mathbf{x}_0` under a
    :class:`GaussianDiffusion`, from rows guided by the other modalities'
    features (:class:`BipartiteGuidance`, :meth:`guides`), with the loss

    .. math::
        \mathcal{L}_m = \mathbb{E}_t\big[w_t \, \mathrm{MSE}(\mathbf{x}_0,
        \hat{\mathbf{x}}_0)\big] + e \cdot \mathrm{MSE}(\hat{\mathbf{x}}_0
        \mathbf{F}_m, \mathbf{x}_0 \mathbf{E}_i)

    (the second term, "modality signal injection", compares a
    modality-weighted and an ID-weighted user profile). :meth:`denoise`
    runs the deterministic reverse chain from the clean rows in evaluation
    mode, and :meth:`generate` keeps each user's top :math:`k` denoised
    items: the edges of the generated user-item graph
    :math:`\mathbf{G}_m` (see :class:`~pyg_mmrec.models.DiffMMCore`).

    Args:
        num_items (int): Number of items :math:`I` (the row length).
        modalities (Sequence[str]): The modalities, one denoiser each.
        guide_channels (int): Size of the guide features.
        hidden_channels (int): Hidden size of the denoisers.
        time_channels (int): Step-embedding size of the denoisers.
        dropout (float): Input dropout of the denoisers.
        diffusion (GaussianDiffusion): The noise schedule.
        guidance_channels (int): Hidden size of the guidance network.
        guidance (str): :obj:`"trained"`: one guidance network, trained
            with the denoisers (MDMNS as its paper describes);
            :obj:`"random"`: MDMNS's original code, a fresh, random,
            untrained network at every call, plus its constant second
            reconstruction term; :obj:`"none"`: DiffMM's, the denoiser reads
            the noisy rows :math:`\mathbf{x}_t` themselves.
        e_loss (float): Weight :math:`e` of the modality signal injection.
        mixed_precision (bool, optional): Run :meth:`loss` and
            :meth:`denoise` under :obj:`bfloat16` autocast.
            (default: :obj:`False`)

    Shapes:
        - **loss input:** rows :math:`(B, I)`, guide :math:`(I, F)`,
          features :math:`(I, d)`, item embeddings :math:`(I, d)`
        - **denoise input / output:** rows :math:`(B, I)`
        - **generate output:** items :math:`(B, k)`
    """
    def __init__(self, num_items: int, modalities: Sequence[str],
                 guide_channels: int, hidden_channels: int,
                 time_channels: int, dropout: float,
                 diffusion: GaussianDiffusion, guidance_channels: int,
                 guidance: str, e_loss: float,
                 mixed_precision: bool = False):
        super().__init__()
        if guidance not in GUIDANCE:
            raise ValueError(f"'guidance' must be one of {GUIDANCE} "
                             f"(got {guidance!r})")
        self.num_items, self.mixed_precision = num_items, mixed_precision
        self.guidance_mode = guidance
        self.modalities: List[str] = list(modalities)
        self.guidance_channels, self.e_loss = guidance_channels, e_loss
        self.process = diffusion
        self.denoisers = torch.nn.ModuleDict({
            m: Denoiser(num_items, hidden_channels, time_channels, dropout)
            for m in self.modalities})
        self.guidance = (BipartiteGuidance(guide_channels, guidance_channels)
                         if guidance == 'trained' else None)

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for den in self.denoisers.values():
            den.reset_parameters()
        if self.guidance is not None:
            self.guidance.reset_parameters()

    def guided_rows(self, rows: Tensor, guide: Tensor) -> Tensor:
        r"""The denoiser input :math:`\tilde{\mathbf{x}}_t` for noisy
        :obj:`rows` (the rows themselves without guidance, a fresh random
        network with :obj:`guidance="random"`)."""
        if self.guidance_mode == 'none':
            return rows
        if self.guidance is not None:
            return self.guidance(rows, guide)
        with torch.no_grad():
            guidance = BipartiteGuidance(guide.size(1), self.guidance_channels)
            return guidance.to(rows.device)(rows, guide)

    def _autocast(self, x: Tensor):
        return torch.autocast(x.device.type, dtype=torch.bfloat16,
                              enabled=self.mixed_precision)

    def loss(self, modality: str, x0: Tensor, guide: Tensor, feature: Tensor,
             item_emb: Tensor) -> Tensor:
        r"""The denoiser loss :math:`\mathcal{L}_m` of one batch of user
        rows :obj:`x0` (guide, features and embeddings detached)."""
        with self._autocast(x0):
            return self._loss(modality, x0, guide, feature, item_emb)

    def _loss(self, modality: str, x0: Tensor, guide: Tensor,
              feature: Tensor, item_emb: Tensor) -> Tensor:
        t = self.process.sample_timesteps(x0.size(0), device=x0.device)
        # x_t is not kept: only its guided form is needed from here on.
        x_hat = self.denoisers[modality](
            self.guided_rows(self.process.q_sample(x0, t), guide), t)
        mse = (x0 - x_hat).pow(2).mean(dim=1)
        if self.guidance_mode == 'random':  # MDMNS's constant: a random Linear
            with torch.no_grad():
                lin = torch.nn.Linear(guide.size(1), x0.size(0)).to(x0.device)
                mse = mse + (x0 - lin(guide).t()).pow(2).mean(dim=1)
        diff = self.process.loss_weight(t) * mse
        msi = (x_hat @ feature - x0 @ item_emb).pow(2).mean(dim=1)
        return diff.mean() + self.e_loss * msi.mean()

    def guides(self, features: Mapping[str, Tensor]) -> Dict[str, Tensor]:
        r"""The guide of each modality: the mean of the other modalities'
        projected :obj:`features` (its own with a single modality)."""
        out = {}
        for m in self.modalities:
            others = ([features[k] for k in self.modalities if k != m]
                      or [features[m]])
            out[m] = (others[0] if len(others) == 1 else
                      torch.stack(others).mean(dim=0))
        return out

    @torch.no_grad()
    def denoise(self, modality: str, x0: Tensor) -> Tensor:
        r"""The reverse chain of :obj:`modality`'s denoiser from the clean
        rows :obj:`x0` :obj:`[B, I]`, in evaluation mode (no random
        number is drawn)."""
        den = self.denoisers[modality]
        was_training = den.training
        den.eval()
        try:
            with self._autocast(x0):
                return self.process.p_sample(den, x0)
        finally:
            den.train(was_training)

    def generate(self, modality: str, x0: Tensor, k: int) -> Tensor:
        r"""The top :obj:`k` items :obj:`[B, k]` of each row of
        :meth:`denoise`."""
        return self.denoise(modality, x0).topk(k, dim=1).indices

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(modalities={self.modalities}, '
                f'num_items={self.num_items}, '
                f'guidance={self.guidance_mode!r})')
