r"""A learned global hypergraph: items and users softly assigned to
:math:`H` hyperedges by a Gumbel-softmax of item features, and the
item -> hyperedge -> item/user convolution over it (LGMRec's global
hypergraph part)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .conv import sparse_mm


def gumbel_noise(like: Tensor) -> Tensor:
    r"""Standard Gumbel noise :math:`g = -\log(-\log u)`, :math:`u \sim
    \mathcal{U}(0, 1)`, of the shape, dtype and device of :obj:`like`
    (from the global random stream), with :math:`u` clamped away from 0
    and 1 so that :math:`g` is always finite."""
    u = torch.rand_like(like)
    finfo = torch.finfo(u.dtype)
    u = u.clamp_(finfo.tiny, 1.0 - finfo.eps)
    return -torch.log(-torch.log(u))


class GumbelHypergraph(torch.nn.Module):
    r"""The global hypergraph of LGMRec (`"LGMRec: Local and Global Graph
    Learning for Multimodal Recommendation"
    <https://arxiv.org/abs/2312.16400>`_): items are softly assigned to
    :math:`H` learnable hyperedges from their (fixed) features
    :math:`\mathbf{X}`, a user by the **sum** of its items' assignment
    logits (:math:`\mathbf{R}` the binary user-item matrix), row-wise
    Gumbel-softmax at temperature :math:`\tau`:

    .. math::
        \tilde{\boldsymbol{\Lambda}}_I = \mathbf{X} \mathbf{Q}, \quad
        \tilde{\boldsymbol{\Lambda}}_U = \mathbf{R}\,
        \tilde{\boldsymbol{\Lambda}}_I, \quad
        \boldsymbol{\Lambda} = \mathrm{Drop}_p\Big(\mathrm{softmax}\big(
        (\tilde{\boldsymbol{\Lambda}} + \mathbf{G}) / \tau\big)\Big),
        \quad g = -\log(-\log u),\; u \sim \mathcal{U}(0, 1),

    with fresh noise :math:`\mathbf{G}` when :obj:`noise` is requested
    (:math:`\mathbf{G} = \mathbf{0}` otherwise: a plain softmax) and
    dropout (:math:`p`, scaled by :math:`1 / (1 - p)`) in training mode
    only. The convolution maps item embeddings :math:`\mathbf{z}` to
    hyperedges and back, :math:`L` times; the users read the last
    iteration's hyperedge embeddings:

    .. math::
        \mathbf{Z}_h = \boldsymbol{\Lambda}_I^{\top} \mathbf{z}, \qquad
        \mathbf{z} \leftarrow \boldsymbol{\Lambda}_I \mathbf{Z}_h, \qquad
        \mathbf{z}_U = \boldsymbol{\Lambda}_U \mathbf{Z}_h.

    Args:
        in_channels (int): The feature width :math:`F`.
        num_hyperedges (int): :math:`H`.
        num_layers (int, optional): Convolution iterations
            :math:`L \geq 1`. (default: :obj:`1`)
        temperature (float, optional): :math:`\tau > 0`.
            (default: :obj:`0.2`)
        dropout (float, optional): :math:`p \in [0, 1)` on the
            assignments. (default: :obj:`0.0`)

    Shapes:
        - **input:** features :math:`(I, F)`, item embeddings
          :math:`(I, d)`, :math:`\mathbf{R}` sparse :math:`(U, I)` (and
          optionally :math:`\mathbf{R}^{\top}` in CSR, for the backward
          pass)
        - **output:** user embeddings :math:`(U, d)`, item embeddings
          :math:`(I, d)`

    Example:
        >>> hyper = GumbelHypergraph(16, num_hyperedges=4)
        >>> R = torch.eye(5, 3).to_sparse_csr()
        >>> z_u, z_i = hyper(torch.randn(3, 16), torch.randn(3, 8), R)
        >>> z_u.shape, z_i.shape
        (torch.Size([5, 8]), torch.Size([3, 8]))
    """
    def __init__(self, in_channels: int, num_hyperedges: int,
                 num_layers: int = 1, temperature: float = 0.2,
                 dropout: float = 0.0):
        super().__init__()
        if num_hyperedges < 1:
            raise ValueError(f"'num_hyperedges' must be >= 1 (got "
                             f"{num_hyperedges})")
        if num_layers < 1:
            raise ValueError(f"'num_layers' must be >= 1 (got {num_layers})")
        if not temperature > 0:
            raise ValueError(f"'temperature' must be > 0 (got "
                             f"{temperature})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"'dropout' must be in [0, 1) (got {dropout})")
        self.in_channels, self.num_hyperedges = in_channels, num_hyperedges
        self.num_layers, self.temperature = num_layers, temperature
        self.dropout = dropout
        #: :math:`\mathbf{Q}` :obj:`[F, H]`.
        self.weight = torch.nn.Parameter(torch.empty(in_channels,
                                                     num_hyperedges))
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets :math:`\mathbf{Q}` (Xavier-uniform)."""
        torch.nn.init.xavier_uniform_(self.weight)

    def logits(self, x: Tensor, interactions: Tensor,
               interactions_t: Optional[Tensor] = None
               ) -> Tuple[Tensor, Tensor]:
        r"""The assignment logits :math:`(\tilde{\boldsymbol{\Lambda}}_U,
        \tilde{\boldsymbol{\Lambda}}_I)`, :obj:`([U, H], [I, H])`."""
        item = x @ self.weight
        return sparse_mm(interactions, item, interactions_t), item

    def assign(self, logits: Tensor, noise: bool) -> Tensor:
        r"""The soft assignments :math:`\boldsymbol{\Lambda}` of
        :obj:`logits` (with Gumbel noise if :obj:`noise`; dropout in
        training mode)."""
        if noise:
            logits = logits + gumbel_noise(logits)
        out = torch.softmax(logits / self.temperature, dim=-1)
        return F.dropout(out, self.dropout, training=self.training)

    def convolve(self, user_assignment: Tensor, item_assignment: Tensor,
                 z: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The hypergraph convolution of item embeddings :obj:`z` with
        given assignments :obj:`([U, H], [I, H])`: :obj:`(z_U, z)`."""
        for _ in range(self.num_layers):
            hyperedges = item_assignment.t() @ z
            z = item_assignment @ hyperedges
        return user_assignment @ hyperedges, z

    def forward(self, x: Tensor, z: Tensor, interactions: Tensor,
                interactions_t: Optional[Tensor] = None,
                noise: Optional[bool] = None) -> Tuple[Tensor, Tensor]:
        r"""Runs the forward pass of the module.

        Args:
            x (torch.Tensor): The item features :math:`\mathbf{X}`
                :obj:`[I, F]`.
            z (torch.Tensor): The item embeddings to convolve
                :obj:`[I, d]`.
            interactions (torch.Tensor): The binary :math:`\mathbf{R}`
                :obj:`[U, I]` (sparse).
            interactions_t (torch.Tensor, optional): :math:`\mathbf{R}^{\top}`
                in CSR. (default: :obj:`None`)
            noise (bool, optional): Draw Gumbel noise; :obj:`None` draws
                it in training mode only. (default: :obj:`None`)
        """
        noise = self.training if noise is None else noise
        user_logits, item_logits = self.logits(x, interactions,
                                               interactions_t)
        item_assignment = self.assign(item_logits, noise)
        user_assignment = self.assign(user_logits, noise)
        return self.convolve(user_assignment, item_assignment, z)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'num_hyperedges={self.num_hyperedges}, '
                f'num_layers={self.num_layers}, '
                f'temperature={self.temperature}, dropout={self.dropout})')
