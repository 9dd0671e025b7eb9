r"""Attention over the coordinates of a vector, as REARM's modal attention
uses it."""
import math
from typing import Optional

import torch
from torch import Tensor


class CoordinateAttention(torch.nn.Module):
    r"""Single-head attention whose tokens are the :math:`d` scalar
    coordinates of each node's vector: what
    :class:`torch.nn.MultiheadAttention` with :obj:`embed_dim=1` and
    :obj:`num_heads=1` computes on inputs of shape :obj:`[N, d, 1]` (REARM's
    self- and mutual attention), without the reshapes.

    With query vector :math:`\mathbf{x}` and key/value vector
    :math:`\mathbf{y}` of a node, every projection is a scalar affine map,
    :math:`q_i = a_q x_i + b_q`, :math:`k_j = a_k y_j + b_k`,
    :math:`v_j = a_v y_j + b_v`, and

    .. math::
        \mathrm{out}_i = a_o \sum_{j=1}^{d}
        \operatorname{softmax}_j(q_i k_j) \, v_j + b_o
        = a_o \sum_{j=1}^{d} \frac{\exp(q_i a_k y_j)}
        {\sum_{l} \exp(q_i a_k y_l)} \, v_j + b_o,

    (the term :math:`q_i b_k` does not depend on :math:`j` and cancels in
    the softmax): coordinate :math:`i` of the output is a kernel-weighted
    average of the value coordinates, sharper where :math:`|q_i|` is large,
    leaning towards the largest :math:`y_j` for :math:`q_i a_k > 0` and the
    smallest for :math:`q_i a_k < 0`. It mixes the coordinates of one node;
    nodes never see each other. Dropout (training only) drops entries of the
    :math:`d \times d` attention weights, as :class:`MultiheadAttention`
    does.

    The :math:`[N, d, d]` weights are computed :obj:`chunk_size` nodes at a
    time in evaluation mode; in training mode they are kept for the
    backward pass.

    Followed by a LayerNorm of :math:`\mathbf{x} + \mathrm{out}` (as in
    REARM), only :math:`b_q` matters: :math:`b_k` cancels in the softmax,
    and :math:`b_v` and :math:`b_o` shift every coordinate of a node by the
    same amount, which the LayerNorm removes; :obj:`bias="query"` leaves
    those three out (they would never receive a gradient).

    Args:
        dropout (float, optional): Dropout probability on the attention
            weights. (default: :obj:`0.0`)
        bias (str, optional): :obj:`"all"` (:math:`b_q, b_k, b_v, b_o`, as
            :class:`MultiheadAttention`) or :obj:`"query"` (:math:`b_q`
            only). (default: :obj:`"all"`)
        chunk_size (int, optional): Nodes per block without gradient.
            (default: :obj:`4096`)

    Shapes:
        - **input:** query :math:`(N, d)`, key/value :math:`(N, d)`
          (default: the query)
        - **output:** :math:`(N, d)`
    """
    def __init__(self, dropout: float = 0.0, bias: str = 'all',
                 chunk_size: int = 4096):
        super().__init__()
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"'dropout' must be in [0, 1] (got {dropout})")
        if bias not in ('all', 'query'):
            raise ValueError(f"'bias' must be 'all' or 'query' (got {bias!r})")
        self.dropout, self.bias, self.chunk_size = dropout, bias, chunk_size
        #: :math:`(a_q, a_k, a_v)` and :math:`(b_q, b_k, b_v)` (or
        #: :math:`b_q` alone).
        self.in_weight = torch.nn.Parameter(torch.empty(3))
        self.in_bias = torch.nn.Parameter(torch.empty(3 if bias == 'all'
                                                      else 1))
        self.out_weight = torch.nn.Parameter(torch.empty(()))
        self.out_bias = (torch.nn.Parameter(torch.empty(()))
                         if bias == 'all' else None)
        self.reset_parameters()

    def reset_parameters(self):
        r"""As :class:`torch.nn.MultiheadAttention`: Xavier-uniform input
        weights (fan-in 1, fan-out 3), a Kaiming-uniform output weight
        (fan-in 1), zero biases."""
        bound = math.sqrt(6.0 / (1 + 3))
        torch.nn.init.uniform_(self.in_weight, -bound, bound)
        torch.nn.init.uniform_(self.out_weight, -1.0, 1.0)
        torch.nn.init.zeros_(self.in_bias)
        if self.out_bias is not None:
            torch.nn.init.zeros_(self.out_bias)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        weight = torch.softmax(q.unsqueeze(-1) * k.unsqueeze(-2), dim=-1)
        if self.training and self.dropout >= 1:
            weight = torch.zeros_like(weight)
        elif self.training and self.dropout > 0:
            # Inverted dropout from uniform draws: the same distribution as
            # F.dropout, about 1.5x faster on CPU for these d x d weights.
            keep = torch.rand_like(weight) >= self.dropout
            weight = weight * keep / (1.0 - self.dropout)
        return torch.bmm(weight, v.unsqueeze(-1)).squeeze(-1)

    def forward(self, query: Tensor, key: Optional[Tensor] = None) -> Tensor:
        key = query if key is None else key
        if query.shape != key.shape or query.dim() != 2:
            raise ValueError(f"'query' and 'key' must both be [N, d] (got "
                             f"{tuple(query.shape)} and {tuple(key.shape)})")
        a, b = self.in_weight, self.in_bias
        q = a[0] * query + b[0]
        if self.bias == 'all':
            k, v = a[1] * key + b[1], a[2] * key + b[2]
        else:
            k, v = a[1] * key, a[2] * key
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
            out = self._attend(q, k, v)
        else:
            out = torch.cat([self._attend(*parts) for parts in zip(
                q.split(self.chunk_size), k.split(self.chunk_size),
                v.split(self.chunk_size))]) if q.numel() else q
        out = self.out_weight * out
        return out if self.out_bias is None else out + self.out_bias

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(dropout={self.dropout}, '
                f'bias={self.bias!r})')
