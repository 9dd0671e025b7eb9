r"""REARM's meta-network: a personalised low-rank transform generated from
each node's modal knowledge."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def _mlp(in_channels: int, out_channels: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(in_channels, out_channels),
                               torch.nn.PReLU(),
                               torch.nn.Linear(out_channels, out_channels))


class MetaLowRankTransform(torch.nn.Module):
    r"""Maps each node's embedding :math:`\mathbf{z}_n \in \mathbb{R}^d`
    through a rank-:math:`r` transform generated from its modal knowledge
    :math:`\mathbf{m}_n` (REARM, "meta shared knowledge"):

    .. math::
        \boldsymbol{\kappa}_n = \mathbf{W}_m \mathbf{m}_n + \mathbf{b}_m,
        \qquad
        \mathbf{T}^{(1)}_n = \operatorname{norm}(\mathrm{MLP}_1(
        \boldsymbol{\kappa}_n)) \in \mathbb{R}^{d \times r}, \qquad
        \mathbf{T}^{(2)}_n = \operatorname{norm}(\mathrm{MLP}_2(
        \boldsymbol{\kappa}_n)) \in \mathbb{R}^{r \times d},

    .. math::
        \mathbf{W}^{(1)}_n = \operatorname{softmax}_{d}(\mathbf{T}^{(1)}_n +
        \bar{\mathbf{T}}^{(1)}), \quad
        \mathbf{W}^{(2)}_n = \operatorname{softmax}_{r}(\mathbf{T}^{(2)}_n +
        \bar{\mathbf{T}}^{(2)}), \quad
        \mathbf{s}_n = (\mathbf{z}_n^{\top} \mathbf{W}^{(1)}_n)
        \mathbf{W}^{(2)}_n,

    where each MLP is Linear -> PReLU -> Linear with :math:`d r` outputs,
    L2-normalised over all :math:`d r` entries (:math:`\operatorname{norm}`),
    and :math:`\bar{\mathbf{T}}` is the mean over the :math:`N` nodes of the
    call. Both softmaxes run over the first matrix axis (:math:`d` for
    :math:`\mathbf{W}^{(1)}`, :math:`r` for :math:`\mathbf{W}^{(2)}`).

    Args:
        in_channels (int): Size of :math:`\mathbf{m}` (REARM: :math:`2d`).
        channels (int): :math:`d`.
        rank (int): :math:`r`.
        detach_knowledge (bool, optional): Stop the gradient at
            :math:`\boldsymbol{\kappa}`, as REARM's original does (so that
            :math:`\mathbf{W}_m` is never trained). (default: :obj:`False`)

    Shapes:
        - **input:** knowledge :math:`(N, F_{in})`, embeddings :math:`(N, d)`
        - **output:** :math:`(N, d)`
    """
    def __init__(self, in_channels: int, channels: int, rank: int,
                 detach_knowledge: bool = False):
        super().__init__()
        if min(in_channels, channels, rank) < 1:
            raise ValueError(f"'in_channels', 'channels' and 'rank' must be "
                             f"positive (got {in_channels}, {channels}, "
                             f"{rank})")
        self.in_channels, self.channels = in_channels, channels
        self.rank = rank
        self.detach_knowledge = detach_knowledge
        self.meta = torch.nn.Linear(in_channels, channels)
        self.mlp1 = _mlp(channels, channels * rank)
        self.mlp2 = _mlp(channels, channels * rank)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Xavier-normal weights and zero biases, as REARM; PReLU at
        :obj:`0.25`."""
        for module in self.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.xavier_normal_(module.weight)
                torch.nn.init.zeros_(module.bias)
            elif isinstance(module, torch.nn.PReLU):
                torch.nn.init.constant_(module.weight, 0.25)

    def templates(self, knowledge: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The per-node :math:`\mathbf{T}^{(1)}` :obj:`[N, d, r]` and
        :math:`\mathbf{T}^{(2)}` :obj:`[N, r, d]`."""
        n, d, r = knowledge.size(0), self.channels, self.rank
        kappa = self.meta(knowledge)
        if self.detach_knowledge:
            kappa = kappa.detach()
        t1 = F.normalize(self.mlp1(kappa), dim=1).view(n, d, r)
        t2 = F.normalize(self.mlp2(kappa), dim=1).view(n, r, d)
        return t1, t2

    def template_means(self, knowledge: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The means :math:`\bar{\mathbf{T}}^{(1)}, \bar{\mathbf{T}}^{(2)}`
        :obj:`([1, d, r], [1, r, d])` over the nodes of :obj:`knowledge`."""
        t1, t2 = self.templates(knowledge)
        return t1.mean(dim=0, keepdim=True), t2.mean(dim=0, keepdim=True)

    def forward(self, knowledge: Tensor, z: Tensor,
                means: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
        r"""The transformed :obj:`z`; :obj:`means` replaces the means of
        the call's nodes by given ones (*e.g.* those of every node, for a
        subset of them: see :meth:`template_means`)."""
        t1, t2 = self.templates(knowledge)
        if means is None:
            means = (t1.mean(dim=0, keepdim=True),
                     t2.mean(dim=0, keepdim=True))
        w1 = torch.softmax(t1 + means[0], dim=1)
        w2 = torch.softmax(t2 + means[1], dim=1)
        low = torch.bmm(z.unsqueeze(1), w1)  # [N, 1, r]
        return torch.bmm(low, w2).squeeze(1)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.channels}, rank={self.rank})')
