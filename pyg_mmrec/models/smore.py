"""SMORE."""
from typing import Dict, List, Optional

import torch
from torch import Tensor

from ..graphs import elementwise_max
from ..nn import SpectralFilter, sigmoid_gate
from .mgcn import MGCN
from .registry import register_model

#: The name of SMORE's fusion view (beside the modalities').
FUSION = 'fusion'


class ModalityAwarePreference(torch.nn.Module):
    r"""SMORE's modality-aware preference module: each modality view is
    re-weighted by a softmax over its :math:`d` coordinates computed from
    the fusion view, every view by a (dropped-out) preference gate of the
    ID view :math:`\mathbf{C}`, and the views are averaged:

    .. math::
        \mathbf{a}_m = \mathrm{softmax}_{d}\big(\mathbf{Q}_m
        \tanh(\mathbf{W}_m \mathbf{H}_f + \mathbf{b}_m)\big), \quad
        \boldsymbol{\pi}_v = \mathrm{Drop}(\sigma(\mathbf{P}_v \mathbf{C}
        + \mathbf{p}_v)),

    .. math::
        \mathbf{S} = \frac{1}{M + 1}\Big(\sum_m \boldsymbol{\pi}_m \odot
        \mathbf{a}_m \odot \mathbf{H}_m + \boldsymbol{\pi}_f \odot
        \mathbf{H}_f\Big).

    Args:
        channels (int): :math:`d`.
        num_modalities (int): :math:`M`.
        dropout (float): Dropout on the preference gates. (default:
            :obj:`0.0`)

    Shapes:
        - **input:** views :obj:`[M + 1, N, d]` (the fusion view last), ID
          view :obj:`[N, d]`
        - **output:** :obj:`[N, d]`
    """
    def __init__(self, channels: int, num_modalities: int,
                 dropout: float = 0.0):
        super().__init__()
        self.queries = torch.nn.ModuleList([torch.nn.Sequential(
            torch.nn.Linear(channels, channels), torch.nn.Tanh(),
            torch.nn.Linear(channels, channels, bias=False))
            for _ in range(num_modalities)])
        self.preferences = torch.nn.ModuleList(
            [sigmoid_gate(channels) for _ in range(num_modalities + 1)])
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, hidden: Tensor, content: Tensor) -> Tensor:
        fusion = hidden[-1]
        side = self.dropout(self.preferences[-1](content)) * fusion
        for h, query, pref in zip(hidden[:-1], self.queries,
                                  self.preferences):
            attn = torch.softmax(query(fusion), dim=-1)
            side = side + self.dropout(pref(content)) * attn * h
        return side / hidden.size(0)


@register_model('smore')
class SMORE(MGCN):
    r"""SMORE from `"Spectrum-based Modality Representation Fusion Graph
    Convolutional Network for Multimodal Recommendation"
    <https://arxiv.org/abs/2412.14978>`_ (WSDM 2025): :class:`MGCN` with a
    spectral front end and a third, fusion view.

    The projected features :math:`\mathbf{f}_m` are filtered in the
    frequency domain of their :math:`d` coordinates
    (:class:`~pyg_mmrec.nn.SpectralFilter`): each modality by its own
    complex gains, :math:`\mathbf{f}'_m = \mathcal{F}^{-1}(\boldsymbol{
    \phi}_m \odot \mathcal{F}\mathbf{f}_m)`, and the fusion feature from
    the product of every modality's spectrum, :math:`\mathbf{f}'_f =
    \mathcal{F}^{-1}(\boldsymbol{\phi}_f \odot \prod_m
    \mathcal{F}\mathbf{f}_m)`. Each of the :math:`M + 1` features gates the
    item ID embeddings and is propagated over its frozen item graph (the
    modalities' kNN graphs as MGCN's, with one :obj:`knn_k` per modality,
    and their element-wise maximum for the fusion view,
    :func:`~pyg_mmrec.graphs.elementwise_max`, not re-normalised), then to
    the users (see :class:`MGCN`). The side view comes from
    :obj:`ModalityAwarePreference`; :math:`\mathbf{Z} = \mathbf{C} +
    \mathbf{S}`; the loss is MGCN's.

    Differences from the reference code (``kennethorq/SMORE``, MMRec's
    ``smore.py``), besides MGCN's:

    * Any number of modalities: the fusion spectrum is the product of all
      of them (of the two there) and the fusion graph the maximum of all
      kNN graphs; with one modality the fusion view is a second filter of
      it on the same graph.

    Args:
        data (HeteroData): The dataset; it must carry item features.
        dropout (float): Dropout on the preference gates
            (:obj:`dropout_rate`). (default: :obj:`0.0`)
        **kwargs: :class:`MGCN`'s settings (:obj:`num_ui_layers` default
            3 here, the original's Sports and Clothing setting).
    """
    def __init__(self, data, num_ui_layers: int = 3, dropout: float = 0.0,
                 **kwargs):
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = dropout
        super().__init__(data, num_ui_layers=num_ui_layers, **kwargs)
        self.filters = torch.nn.ModuleDict({
            v: SpectralFilter(self.embedding_dim) for v in self.views})
        self.reset_parameters()

    def extra_graphs(self, graphs: Dict[str, Tensor]) -> Dict[str, Tensor]:
        r"""The fusion view's graph: the element-wise maximum of the
        modality graphs."""
        if FUSION in graphs:
            raise ValueError(f"SMORE: a modality is named {FUSION!r}, the "
                             f"name of its fusion view")
        return {FUSION: elementwise_max(list(graphs.values()))}

    def build_fuser(self) -> torch.nn.Module:
        return ModalityAwarePreference(self.embedding_dim,
                                       len(self.modalities), self.dropout)

    def reset_parameters(self):
        super().reset_parameters()
        if hasattr(self, 'filters'):
            for f in self.filters.values():
                f.reset_parameters()

    def view_feature(self, view: str, items: Optional[Tensor]) -> Tensor:
        if view != FUSION:
            return self.filters[view](self.projected(view, items))
        inputs: List[Tensor] = [self.projected(m, items)
                                for m in self.modalities]
        return self.filters[FUSION](*inputs)
