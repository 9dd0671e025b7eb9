r"""Modality fusion blocks of the MGCN family (MGCN, SMORE, and GenRec-V1's
recommender): ID embeddings "purified" by modality gates, and the
common/specific fuser whose specific parts are gated by the collaborative
view."""
from typing import List, Optional, Sequence

import torch
from torch import Tensor


def common_specific_fusion(hidden: Tensor, logits: Tensor,
                           preferences: Sequence[Optional[Tensor]],
                           divisor: float) -> Tensor:
    r"""The common/specific fusion of :math:`M` modality views
    :math:`\mathbf{H}_m` (MGCN's behaviour-aware fuser):

    .. math::
        \beta_{m} = \mathrm{softmax}_m(a_m), \quad
        \bar{\mathbf{H}} = \sum_m \beta_m \mathbf{H}_m, \quad
        \mathbf{S} = \frac{1}{c}\Big(\bar{\mathbf{H}} + \sum_m
        \boldsymbol{\pi}_m \odot (\mathbf{H}_m - \bar{\mathbf{H}})\Big),

    per node, with a modality whose preference :math:`\boldsymbol{\pi}_m`
    is :obj:`None` left out of the sum (GenRec-V1's TikTok rule).

    Args:
        hidden (torch.Tensor): The views :obj:`[M, N, d]`.
        logits (torch.Tensor): The attention logits :math:`a_m`
            :obj:`[M, N, 1]`.
        preferences (list[torch.Tensor or None]): :math:`M` gates
            :obj:`[N, d]` (or :obj:`None`).
        divisor (float): :math:`c` (MGCN: :math:`M + 1`).
    """
    attn = torch.softmax(logits, dim=0)
    common = (attn * hidden).sum(dim=0)
    side = common
    for h, pref in zip(hidden, preferences):
        if pref is not None:
            side = side + pref * (h - common)
    return side / divisor


def sigmoid_gate(channels: int) -> torch.nn.Module:
    r""":math:`\sigma(\mathbf{W}\mathbf{x} + \mathbf{b})`, the gate of MGCN's
    purifier and preferences."""
    return torch.nn.Sequential(torch.nn.Linear(channels, channels),
                               torch.nn.Sigmoid())


class BehaviourAwareFuser(torch.nn.Module):
    r"""MGCN's behaviour-aware fuser from `"Multi-View Graph Convolutional
    Network for Multimedia Recommendation"
    <https://arxiv.org/abs/2308.03588>`_ (MM 2023): attention over the
    modality views (:math:`a_m = \mathbf{w}^{\top}\tanh(\mathbf{W}
    \mathbf{H}_m + \mathbf{b})`), their weighted mean as the common part,
    and each view's specific part gated by a preference
    :math:`\boldsymbol{\pi}_m = \sigma(\mathbf{P}_m \mathbf{C} +
    \mathbf{p}_m)` of the collaborative (ID) view :math:`\mathbf{C}`; the
    result divided by :math:`M + 1` (see :func:`common_specific_fusion`).

    Args:
        channels (int): :math:`d`.
        num_views (int): :math:`M`.

    Shapes:
        - **input:** views :obj:`[M, N, d]`, collaborative view
          :obj:`[N, d]`
        - **output:** :obj:`[N, d]`
    """
    def __init__(self, channels: int, num_views: int):
        super().__init__()
        self.query = torch.nn.Sequential(
            torch.nn.Linear(channels, channels), torch.nn.Tanh(),
            torch.nn.Linear(channels, 1, bias=False))
        self.preferences = torch.nn.ModuleList(
            [sigmoid_gate(channels) for _ in range(num_views)])

    def reset_parameters(self):
        for module in self.modules():
            if isinstance(module, torch.nn.Linear):
                module.reset_parameters()

    def forward(self, hidden: Tensor, content: Tensor) -> Tensor:
        logits = torch.stack([self.query(h) for h in hidden])
        prefs: List[Optional[Tensor]] = [p(content) for p in self.preferences]
        return common_specific_fusion(hidden, logits, prefs, len(hidden) + 1)
