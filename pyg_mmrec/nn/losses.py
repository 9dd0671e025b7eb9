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
