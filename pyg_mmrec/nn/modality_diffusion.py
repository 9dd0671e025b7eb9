r"""The modality-aware graph diffusion of DiffMM and MDMNS: per-modality
denoisers of users' interaction rows, and the user-item graphs they
generate."""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..graphs import csr_dense_rows, csr_transpose, generated_adjacency
from .denoiser import BipartiteGuidance, Denoiser
from .diffusion import GaussianDiffusion


class ModalityDiffusion(torch.nn.Module):
    r"""One :class:`Denoiser` per modality :math:`m` reconstructs users'
    interaction rows :math:`\mathbf{x}_0` under a
    :class:`GaussianDiffusion`, from rows guided by the other modalities'
    features (:class:`BipartiteGuidance`), with the loss

    .. math::
        \mathcal{L}_m = \mathbb{E}_t\big[w_t \, \mathrm{MSE}(\mathbf{x}_0,
        \hat{\mathbf{x}}_0)\big] + e \cdot \mathrm{MSE}(\hat{\mathbf{x}}_0
        \mathbf{F}_m, \mathbf{x}_0 \mathbf{E}_i)

    (the second term, "modality signal injection", compares a
    modality-weighted and an ID-weighted user profile). :meth:`rebuild`
    denoises every user's row (the deterministic reverse chain from the
    clean row, block by block over users, never all rows at once) and keeps
    its top :math:`k` items; :meth:`graph` turns them into the generated
    user-item graph :math:`\mathbf{G}_m` (self-looped, GCN-normalised,
    entries dropped with :obj:`keep_rate` under a seed drawn at each
    rebuild). The generated items and the seed are buffers (checkpointed);
    the graphs are derived from them.

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I` (the row length).
        modalities (Sequence[str]): The modalities, one denoiser each.
        guide_channels (int): Size of the guide features.
        hidden_channels (int): Hidden size of the denoisers.
        time_channels (int): Step-embedding size of the denoisers.
        dropout (float): Input dropout of the denoisers.
        diffusion (GaussianDiffusion): The noise schedule.
        guidance_channels (int): Hidden size of the guidance network.
        trained_guidance (bool): One guidance network, trained with the
            denoisers; :obj:`False` is DiffMM's and MDMNS's original: a
            fresh, random, untrained network at every call, plus the
            original's constant second reconstruction term.
        e_loss (float): Weight :math:`e` of the modality signal injection.
        rebuild_k (int): Generated items per user :math:`k`.
        keep_rate (float): Entry keep rate of the generated graphs.

    Shapes:
        - **loss input:** rows :math:`(B, I)`, guide :math:`(I, F)`,
          features :math:`(I, d)`, item embeddings :math:`(I, d)`
        - **graph output:** :math:`(U + I, U + I)` CSR and its transpose
    """
    def __init__(self, num_users: int, num_items: int,
                 modalities: Sequence[str], guide_channels: int,
                 hidden_channels: int, time_channels: int, dropout: float,
                 diffusion: GaussianDiffusion, guidance_channels: int,
                 trained_guidance: bool, e_loss: float, rebuild_k: int,
                 keep_rate: float):
        super().__init__()
        if not 1 <= rebuild_k <= num_items:
            raise ValueError(f"rebuild_k must be in [1, {num_items}], "
                             f"got {rebuild_k}")
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
        self.num_users, self.num_items = num_users, num_items
        self.modalities: List[str] = list(modalities)
        self.guidance_channels, self.e_loss = guidance_channels, e_loss
        self.rebuild_k, self.keep_rate = rebuild_k, keep_rate
        self.process = diffusion
        self.denoisers = torch.nn.ModuleDict({
            m: Denoiser(num_items, hidden_channels, time_channels, dropout)
            for m in self.modalities})
        self.guidance = (BipartiteGuidance(guide_channels, guidance_channels)
                         if trained_guidance else None)
        for m in self.modalities:
            self.register_buffer(
                f'generated_{m}',
                torch.zeros(num_users, rebuild_k, dtype=torch.long))
            self.register_buffer(f'graph_{m}', None, persistent=False)
            self.register_buffer(f'graph_{m}_t', None, persistent=False)
        self.register_buffer('dropout_seed', torch.zeros((), dtype=torch.long))
        self.register_buffer('has_generated', torch.tensor(False))
        self.register_load_state_dict_post_hook(
            lambda module, _: module.clear_graphs())

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for den in self.denoisers.values():
            den.reset_parameters()
        if self.guidance is not None:
            self.guidance.reset_parameters()

    def guided_rows(self, rows: Tensor, guide: Tensor) -> Tensor:
        r"""The denoiser input :math:`\tilde{\mathbf{x}}_t` for noisy
        :obj:`rows` (a fresh random network without trained guidance)."""
        if self.guidance is not None:
            return self.guidance(rows, guide)
        with torch.no_grad():
            guidance = BipartiteGuidance(guide.size(1), self.guidance_channels)
            return guidance.to(rows.device)(rows, guide)

    def loss(self, modality: str, x0: Tensor, guide: Tensor, feature: Tensor,
             item_emb: Tensor) -> Tensor:
        r"""The denoiser loss :math:`\mathcal{L}_m` of one batch of user
        rows :obj:`x0` (guide, features and embeddings detached)."""
        t = self.process.sample_timesteps(x0.size(0), device=x0.device)
        # x_t is not kept: only its guided form is needed from here on.
        x_hat = self.denoisers[modality](
            self.guided_rows(self.process.q_sample(x0, t), guide), t)
        mse = (x0 - x_hat).pow(2).mean(dim=1)
        if self.guidance is None:  # the original's constant: a random Linear
            with torch.no_grad():
                lin = torch.nn.Linear(guide.size(1), x0.size(0)).to(x0.device)
                mse = mse + (x0 - lin(guide).t()).pow(2).mean(dim=1)
        diff = self.process.loss_weight(t) * mse
        msi = (x_hat @ feature - x0 @ item_emb).pow(2).mean(dim=1)
        return diff.mean() + self.e_loss * msi.mean()

    @torch.no_grad()
    def rebuild(self, interactions: Tensor, block_size: int,
                autocast: Optional[Callable] = None) -> None:
        r"""Denoises every row of the CSR :obj:`interactions` :obj:`[U, I]`
        with each modality's denoiser, :obj:`block_size` users at a time
        (in :obj:`autocast()` when given), keeps the top :math:`k` items per
        user and draws a new entry-dropout seed."""
        for m, den in self.denoisers.items():
            was_training = den.training
            den.eval()
            out = getattr(self, f'generated_{m}')
            users = torch.arange(self.num_users, device=out.device)
            for block in users.split(block_size):
                x0 = csr_dense_rows(interactions, block)
                if autocast is None:
                    x_hat = self.process.p_sample(den, x0)
                else:
                    with autocast():
                        x_hat = self.process.p_sample(den, x0)
                out[block] = x_hat.topk(self.rebuild_k, dim=1).indices
            den.train(was_training)
        self.dropout_seed.fill_(int(torch.randint(2**62, ())))
        self.has_generated.fill_(True)
        self.clear_graphs()

    def clear_graphs(self) -> None:
        r"""Drops the derived graphs (rebuilt by :meth:`graph`)."""
        for m in self.modalities:
            setattr(self, f'graph_{m}', None)
            setattr(self, f'graph_{m}_t', None)

    def graph(self, modality: str) -> Tuple[Tensor, Tensor]:
        r"""The generated graph :math:`\mathbf{G}_m` and its transpose
        (after a :meth:`rebuild`)."""
        if not bool(self.has_generated):
            raise RuntimeError("no generated graph yet: call rebuild() first")
        if getattr(self, f'graph_{modality}') is None:
            adj = generated_adjacency(
                getattr(self, f'generated_{modality}'), self.num_users,
                self.num_items, self.keep_rate,
                int(self.dropout_seed) + self.modalities.index(modality))
            setattr(self, f'graph_{modality}', adj)
            setattr(self, f'graph_{modality}_t', csr_transpose(adj))
        return (getattr(self, f'graph_{modality}'),
                getattr(self, f'graph_{modality}_t'))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(modalities={self.modalities}, '
                f'num_items={self.num_items}, rebuild_k={self.rebuild_k}, '
                f'trained_guidance={self.guidance is not None})')
