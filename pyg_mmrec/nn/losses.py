"""Losses shared by the recommenders."""
import torch.nn.functional as F
from torch import Tensor


def bpr_loss(pos_score: Tensor, neg_score: Tensor) -> Tensor:
    r"""Bayesian personalised ranking loss
    :math:`-\frac{1}{B}\sum \log \sigma(s^+ - s^-)`, computed as
    :math:`\mathrm{softplus}(s^- - s^+)` for numerical stability."""
    return F.softplus(neg_score - pos_score).mean()


def l2_reg(*tensors: Tensor) -> Tensor:
    r"""Per-example L2 penalty :math:`\frac{1}{B}\sum_x \frac{1}{2}\|x\|^2`
    over the rows of the given :obj:`[B, d]` tensors (the LightGCN paper's
    regulariser on the layer-0 embeddings of a batch)."""
    batch_size = tensors[0].size(0)
    return sum(t.pow(2).sum() for t in tensors) / (2 * batch_size)


def orthogonality_loss(x: Tensor, y: Tensor, eps: float = 1e-6) -> Tensor:
    r"""REARM's modal-unique loss: the mean squared cross-correlation of two
    channels over a batch of rows,

    .. math::
        \mathcal{L} = \frac{1}{d^2} \sum_{a, b}
        \Big(\sum_n \tilde{x}_{na} \tilde{y}_{nb}\Big)^2, \qquad
        \tilde{\mathbf{x}}_n = \frac{\mathbf{x}_n - \bar{\mathbf{x}}}
        {\operatorname{sg}(\lVert \mathbf{x}_n - \bar{\mathbf{x}} \rVert)
        + \epsilon},

    with the columns centred over the batch, the rows divided by their
    norm without gradient (:math:`\operatorname{sg}`), and
    :math:`\tilde{\mathbf{y}}` likewise: it pushes the two channels to be
    uncorrelated.

    Args:
        x (torch.Tensor): One channel of the batch's rows :obj:`[B, d]`.
        y (torch.Tensor): The other channel :obj:`[B, d]`.
        eps (float, optional): :math:`\epsilon`. (default: :obj:`1e-6`)
    """
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"'x' and 'y' must both be [B, d] (got "
                         f"{tuple(x.shape)} and {tuple(y.shape)})")

    def standardise(t: Tensor) -> Tensor:
        t = t - t.mean(dim=0, keepdim=True)
        return t / (t.norm(dim=1, keepdim=True).detach() + eps)

    return (standardise(x).t() @ standardise(y)).pow(2).mean()
