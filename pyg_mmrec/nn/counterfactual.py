r"""MCLN's counterfactual attention across the rows of a batch."""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


class CounterfactualAttention(torch.nn.Module):
    r"""One counterfactual attention block of MCLN ("Multimodal
    Counterfactual Learning Network for Multimedia-based Recommendation",
    SIGIR'23), over the :math:`B` rows of :obj:`x` (items of different
    users, not a sequence):

    .. math::
        \mathbf{S} &= \frac{(\mathbf{X}\mathbf{W}_Q)(\mathbf{X}\mathbf{W}_K)
        ^{\top}}{\sqrt{D}}, \qquad
        \mathbf{S}_c = \frac{(\mathbf{X}_c\mathbf{W}_{Q,c})
        (\mathbf{X}_c\mathbf{W}_{K,c})^{\top}}{\sqrt{D}},

        \mathbf{Y} &= \mathrm{LN}_1\big(\mathbf{X} +
        \operatorname{softmax}_{\text{row}}(\mathbf{S} - \mathbf{S}_c)\,
        \mathbf{X}\mathbf{W}_V\mathbf{W}_O\big),

        \mathbf{F} &= \mathrm{LN}_2\big(\mathbf{Y} + \mathrm{ReLU}(
        \mathrm{ReLU}(\mathbf{Y}\mathbf{W}_1 + \mathbf{b}_1)\mathbf{W}_2 +
        \mathbf{b}_2)\big),

    with :math:`\mathbf{X}_c` the intervention items' inputs; without them
    (:obj:`x_int=None`, MCLN's negative branch) :math:`\mathbf{S}_c = 0`.
    The projections :math:`\mathbf{W}_{Q,K,V,O}, \mathbf{W}_{Q,c},
    \mathbf{W}_{K,c}` are bias-free :math:`D \times D`; the feed-forward is
    :math:`D \to 4D \to D` with biases and a ReLU after both layers, as in
    the original.

    With :obj:`diagonal=True` each row attends to itself only (the weight
    matrix is the identity, so :math:`\mathbf{S}` and :math:`\mathbf{S}_c`
    play no part): the output of a row no longer depends on the other rows,
    which full-ranking scoring needs (option (ii) of ``models.md`` 6.8). It
    equals the block on a batch of one row.

    Args:
        dim (int): :math:`D`.

    Shapes:
        - **input:** :obj:`x` :math:`(*, B, D)`, :obj:`x_int` :math:`(*, B,
          D)` or :obj:`None` (leading dimensions: independent sets, *e.g.*
          the candidate lists of several users)
        - **output:** :math:`(*, B, D)`
    """
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        lin = lambda: torch.nn.Linear(dim, dim, bias=False)  # noqa: E731
        self.query, self.key, self.value, self.out = lin(), lin(), lin(), lin()
        self.query_int, self.key_int = lin(), lin()
        self.norm1 = torch.nn.LayerNorm(dim)
        self.ffn1 = torch.nn.Linear(dim, 4 * dim)
        self.ffn2 = torch.nn.Linear(4 * dim, dim)
        self.norm2 = torch.nn.LayerNorm(dim)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Xavier-uniform weights (as the original's TensorFlow layers),
        zero biases, unit LayerNorms."""
        for lin in (self.query, self.key, self.value, self.out,
                    self.query_int, self.key_int, self.ffn1, self.ffn2):
            torch.nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                torch.nn.init.zeros_(lin.bias)
        self.norm1.reset_parameters()
        self.norm2.reset_parameters()

    def scores(self, x: Tensor, x_int: Optional[Tensor] = None) -> Tensor:
        r"""The attention logits :math:`\mathbf{S} - \mathbf{S}_c`
        :obj:`[..., B, B]`."""
        scale = 1.0 / math.sqrt(self.dim)
        s = self.query(x) @ self.key(x).transpose(-1, -2) * scale
        if x_int is not None:
            s = s - (self.query_int(x_int) @
                     self.key_int(x_int).transpose(-1, -2) * scale)
        return s

    def forward(self, x: Tensor, x_int: Optional[Tensor] = None,
                diagonal: bool = False) -> Tensor:
        if x.dim() < 2 or x.size(-1) != self.dim:
            raise ValueError(f"'x' must be [..., B, {self.dim}] (got "
                             f"{tuple(x.shape)})")
        if x_int is not None and x_int.shape != x.shape:
            raise ValueError(f"'x_int' must have the shape of 'x' "
                             f"{tuple(x.shape)} (got {tuple(x_int.shape)})")
        v = self.value(x)
        if not diagonal:
            v = torch.softmax(self.scores(x, x_int), dim=-1) @ v
        y = self.norm1(x + self.out(v))
        return self.norm2(y + F.relu(self.ffn2(F.relu(self.ffn1(y)))))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.dim})'


class CounterfactualEncoder(torch.nn.Module):
    r"""MCLN's two attention branches and projection heads: :obj:`num_blocks`
    :class:`CounterfactualAttention` blocks applied in turn,

    * positive branch: :math:`\mathbf{X} \leftarrow
      \mathrm{block}_l(\mathbf{X}, \mathbf{X}_c)` with the **original**
      intervention inputs :math:`\mathbf{X}_c` at every block (they are
      never updated), then :math:`\mathbf{m}^+ = \mathrm{ReLU}(\mathbf{X}
      \mathbf{W}_m^+)`;
    * negative branch: the same blocks as plain self-attention
      (:math:`\mathbf{S}_c = 0`), then :math:`\mathbf{m}^- =
      \mathrm{ReLU}(\mathbf{X}\mathbf{W}_m^-)`.

    **What is shared.** Both branches run the *same* block modules (every
    projection, feed-forward and LayerNorm): the original builds the
    negative branch in the positive one's variable scopes with reuse, so
    the named projections are certainly shared and the auto-named
    feed-forward and LayerNorm were meant to be (``models.md`` 6.3). The
    two heads :math:`\mathbf{W}_m^\pm` (:math:`D \to d`, bias-free) are
    separate, as in the original.

    Args:
        dim (int): Input width :math:`D`.
        out_dim (int): Head width :math:`d`.
        num_blocks (int): :obj:`n_mca`. (default: :obj:`2`)
    """
    def __init__(self, dim: int, out_dim: int, num_blocks: int = 2):
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"'num_blocks' must be positive (got "
                             f"{num_blocks})")
        self.blocks = torch.nn.ModuleList([
            CounterfactualAttention(dim) for _ in range(num_blocks)])
        self.pos_head = torch.nn.Linear(dim, out_dim, bias=False)
        self.neg_head = torch.nn.Linear(dim, out_dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        for block in self.blocks:
            block.reset_parameters()
        torch.nn.init.xavier_uniform_(self.pos_head.weight)
        torch.nn.init.xavier_uniform_(self.neg_head.weight)

    def positive(self, x: Tensor, x_int: Optional[Tensor],
                 diagonal: bool = False) -> Tensor:
        r""":math:`\mathbf{m}^+` :obj:`[B, d]` of the positive branch
        (:obj:`x_int=None`: self-attention; :obj:`diagonal`: see
        :class:`CounterfactualAttention`)."""
        for block in self.blocks:
            x = block(x, x_int, diagonal)
        return F.relu(self.pos_head(x))

    def negative(self, x: Tensor) -> Tensor:
        r""":math:`\mathbf{m}^-` :obj:`[B, d]` of the negative branch."""
        for block in self.blocks:
            x = block(x)
        return F.relu(self.neg_head(x))

    def forward(self, x_pos: Tensor, x_int: Tensor,
                x_neg: Tensor) -> Tuple[Tensor, Tensor]:
        r"""Returns :math:`(\mathbf{m}^+, \mathbf{m}^-)`."""
        return self.positive(x_pos, x_int), self.negative(x_neg)
