r"""The denoisers of DiffMM and MDMNS: an MLP that predicts clean user
interaction rows from noised rows and their diffusion steps, and the
bipartite graph convolution that guides a modality's rows with the features
of the others (see :class:`~pyg_mmrec.nn.GaussianDiffusion`)."""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .embedding import sinusoidal_time_embedding


class Denoiser(torch.nn.Module):
    r"""The MLP denoiser of DiffMM and MDMNS: it predicts clean interaction
    rows :math:`\hat{\mathbf{x}}_0` from noised rows :math:`\mathbf{x}_t`
    and their steps :math:`t`,

    .. math::
        \mathbf{e}_t = \mathbf{W}_e \, \mathrm{emb}(t) + \mathbf{b}_e,
        \qquad
        \hat{\mathbf{x}}_0 = \mathbf{W}_2 \tanh\!\left(\mathbf{W}_1
        [\mathrm{drop}(\tilde{\mathbf{x}}_t) \,\|\, \mathbf{e}_t] +
        \mathbf{b}_1\right) + \mathbf{b}_2,

    where :math:`\mathrm{emb}` is
    :func:`~pyg_mmrec.nn.sinusoidal_time_embedding` (frequency scale
    :math:`1`), :math:`\tilde{\mathbf{x}}_t` is :math:`\mathbf{x}_t` or, with
    :obj:`normalize_input`, its :math:`L_2`-normalised rows, and
    :math:`\mathrm{drop}` is dropout (active in training mode only). The
    output has no activation.

    Args:
        num_items (int): Row length :math:`I` (the number of items).
        hidden_channels (int, optional): Hidden size. (default: :obj:`1000`)
        time_channels (int, optional): Size of the step embedding.
            (default: :obj:`10`)
        dropout (float, optional): Dropout probability on the input rows.
            (default: :obj:`0.5`)
        normalize_input (bool, optional): :math:`L_2`-normalise the input
            rows first. (default: :obj:`False`)

    Shapes:
        - **input:** rows :math:`(B, I)`, steps :math:`(B)`
        - **output:** predicted clean rows :math:`(B, I)`
    """
    def __init__(self, num_items: int, hidden_channels: int = 1000,
                 time_channels: int = 10, dropout: float = 0.5,
                 normalize_input: bool = False):
        super().__init__()
        if num_items < 1:
            raise ValueError(f"'num_items' must be positive "
                             f"(got {num_items})")
        if hidden_channels < 1:
            raise ValueError(f"'hidden_channels' must be positive "
                             f"(got {hidden_channels})")
        if time_channels < 1:
            raise ValueError(f"'time_channels' must be positive "
                             f"(got {time_channels})")
        if not 0 <= dropout < 1:
            raise ValueError(f"'dropout' must be in [0, 1) (got {dropout})")
        self.num_items = num_items
        self.hidden_channels = hidden_channels
        self.time_channels = time_channels
        self.normalize_input = normalize_input
        self.time_lin = torch.nn.Linear(time_channels, time_channels)
        self.lin1 = torch.nn.Linear(num_items + time_channels,
                                    hidden_channels)
        self.lin2 = torch.nn.Linear(hidden_channels, num_items)
        self.dropout = torch.nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module: every weight
        :math:`\sim \mathcal{N}(0, 2 / (\mathrm{fan\_in} +
        \mathrm{fan\_out}))`, every bias :math:`\sim \mathcal{N}(0,
        0.001^2)`."""
        for lin in (self.time_lin, self.lin1, self.lin2):
            fan_out, fan_in = lin.weight.shape
            std = math.sqrt(2.0 / (fan_in + fan_out))
            torch.nn.init.normal_(lin.weight, mean=0.0, std=std)
            torch.nn.init.normal_(lin.bias, mean=0.0, std=0.001)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        r"""Predicts clean rows.

        Args:
            x (torch.Tensor): Noised rows :obj:`[B, I]`.
            t (torch.Tensor): Steps :obj:`[B]` (or a 0-dim tensor for all).
        """
        if x.dim() != 2 or x.size(-1) != self.num_items:
            raise ValueError(f"'x' must have shape [B, {self.num_items}] "
                             f"(got {tuple(x.shape)})")
        t = t.to(x.device).reshape(-1).expand(x.size(0))
        # Steps embedded in float32 whatever t's dtype:
        emb = sinusoidal_time_embedding(t.float(), self.time_channels)
        emb = self.time_lin(emb.to(self.time_lin.weight.dtype))
        if self.normalize_input:
            x = F.normalize(x, dim=-1)
        x = self.dropout(x)
        h = torch.cat([x, emb.to(x.dtype)], dim=-1)
        return self.lin2(torch.tanh(self.lin1(h)))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_items}, '
                f'hidden_channels={self.hidden_channels})')


class BipartiteGuidance(torch.nn.Module):
    r"""The conditional guidance of MDMNS: one graph convolution on the
    weighted bipartite graph of a batch of (noisy) user rows
    :math:`\mathbf{W} \in \mathbb{R}^{B \times I}` with self-loops, whose
    item nodes carry (projected) guide features of other modalities; the
    output is the user-item score matrix of the propagated nodes,

    .. math::
        \mathbf{h}_u = \frac{\mathbf{r}_u}{d_u} + \sum_i
        \frac{w_{ui}}{\sqrt{d_u d_i}} \mathbf{f}_i, \qquad
        \mathbf{h}_i = \frac{\mathbf{f}_i}{d_i} + \sum_u
        \frac{w_{ui}}{\sqrt{d_u d_i}} \mathbf{r}_u, \qquad
        \tilde{x}_{ui} = \langle \mathbf{W}_o \mathbf{h}_u + \mathbf{b}_o,
        \mathbf{W}_o \mathbf{h}_i + \mathbf{b}_o \rangle,

    with :math:`\mathbf{f}_i = \mathbf{W}_g \mathbf{g}_i + \mathbf{b}_g`
    the item features from the guide :math:`\mathbf{g}`,
    :math:`\mathbf{r}_u \sim \mathcal{N}(\mathbf{0}, \mathbf{I})` random user
    features, and the degrees of :math:`\mathbf{W} + \mathbf{I}`,
    :math:`d_u = 1 + \sum_i w_{ui}`, :math:`d_i = 1 + \sum_u w_{ui}`.

    The normalised :math:`(B + I)^2` adjacency is never formed: both halves
    of the product are two dense :obj:`[B, I]` products, the size of the
    input itself. Noise can make a degree of a noisy row negative, where
    :math:`d^{-1/2}` is undefined; degrees are clamped at the self-loop's
    :math:`1`.

    Args:
        in_channels (int): Size of the guide features.
        hidden_channels (int, optional): Size of the node features.
            (default: :obj:`64`)

    Shapes:
        - **input:** rows :math:`(B, I)`, guide :math:`(I, F_{in})`
        - **output:** guided rows :math:`(B, I)`
    """
    def __init__(self, in_channels: int, hidden_channels: int = 64):
        super().__init__()
        if in_channels < 1 or hidden_channels < 1:
            raise ValueError(f"'in_channels' and 'hidden_channels' must be "
                             f"positive (got {in_channels}, "
                             f"{hidden_channels})")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.lin_guide = torch.nn.Linear(in_channels, hidden_channels)
        self.lin_out = torch.nn.Linear(hidden_channels, hidden_channels)

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.lin_guide.reset_parameters()
        self.lin_out.reset_parameters()

    def forward(self, rows: Tensor, guide: Tensor,
                generator: Optional[torch.Generator] = None) -> Tensor:
        if guide.dim() != 2 or guide.size(0) != rows.size(1):
            raise ValueError(f"'guide' must have shape [{rows.size(1)}, "
                             f"{self.in_channels}] (got "
                             f"{tuple(guide.shape)})")
        f_item = self.lin_guide(guide)
        f_user = torch.randn(rows.size(0), self.hidden_channels,
                             generator=generator, device=rows.device,
                             dtype=f_item.dtype)
        s_user = (1.0 + rows.sum(dim=1)).clamp(min=1.0).rsqrt().unsqueeze(1)
        s_item = (1.0 + rows.sum(dim=0)).clamp(min=1.0).rsqrt().unsqueeze(1)
        h_user = s_user.pow(2) * f_user + s_user * (rows @ (s_item * f_item))
        h_item = (s_item.pow(2) * f_item +
                  s_item * (rows.t() @ (s_user * f_user)))
        return self.lin_out(h_user) @ self.lin_out(h_item).t()

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'hidden_channels={self.hidden_channels})')
