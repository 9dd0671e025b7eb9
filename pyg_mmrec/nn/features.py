r"""The item features of every modality and their projections."""
from typing import (
    Any,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    TypeVar,
    Union,
)

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils import skip_init
from torch_geometric.data import HeteroData

from ..data.hetero import item_features

#: The projection kinds of :class:`ModalityFeatures`.
PROJECTIONS = ('linear', 'matrix', 'block', 'identity')
#: The initialisations of its :obj:`"matrix"` projections.
WEIGHT_INITS = {
    'xavier_uniform': torch.nn.init.xavier_uniform_,
    'xavier_normal': torch.nn.init.xavier_normal_,
}
#: Its activations (:obj:`None`: none).
ACTIVATIONS = (None, 'leaky_relu')
#: The negative slope of :obj:`"leaky_relu"` and of the :obj:`"block"`
#: projection (the DiffMM family's).
NEGATIVE_SLOPE = 0.2

T = TypeVar('T')


def per_modality(value: Union[T, Mapping[str, T]], modalities: List[str],
                 name: str) -> Dict[str, T]:
    r""":obj:`value` for each of :obj:`modalities`: a mapping must name
    every modality and no other; anything else applies to all."""
    if not isinstance(value, Mapping):
        return {m: value for m in modalities}
    if set(value) != set(modalities):
        raise ValueError(f"'{name}' must name every modality {modalities} "
                         f"and no other (got {sorted(value)})")
    return {m: value[m] for m in modalities}


class ModalityFeatures(torch.nn.Module):
    r"""The item feature tables :math:`\mathbf{X}_m` of every modality
    :math:`m` and their projections to a common size :math:`d`,

    .. math::
        \mathbf{F}_m = \sigma_m\big(P_m(\mathbf{X}_m)\big),

    the part of a multimodal recommender that turns the dataset's
    :obj:`x_<modality>` tables into item representations. By
    :obj:`projection`, :math:`P_m` is

    * :obj:`"linear"`: :math:`\mathbf{X}\mathbf{W} + \mathbf{b}`, with
      PyTorch's default initialisation (FMCNS; MDMNS with :obj:`trans=1`);
    * :obj:`"matrix"`: :math:`\mathbf{X}\mathbf{W}`, bias-free (a bias that
      adds the same vector to every item cancels in a BPR loss), with
      :math:`\mathbf{W}` initialised by :obj:`weight_init` (FREEDOM, MCLN,
      MDMNS with :obj:`trans=0`);
    * :obj:`"block"`: Linear, BatchNorm, LeakyReLU(0.2) and Dropout
      (GenRec-V1's residual projector), PyTorch's default initialisation;
    * :obj:`"identity"`: :math:`\mathbf{X}` itself (no parameters);

    and :math:`\sigma_m` is the identity or, with
    :obj:`activation="leaky_relu"`, a LeakyReLU of slope 0.2 (MDMNS's
    bias-free projections). Both may differ between modalities (a mapping
    from modality to value).

    The tables are buffers named :obj:`x_<modality>` outside the state dict
    (the data rebuilds them; :meth:`~torch.nn.Module.to` moves them),
    never trained: the
    dataset's own tensors unless, once at construction, they are cast to
    :obj:`dtype`, shifted by :obj:`shift` (:math:`\mathbf{X}_m \leftarrow
    \mathbf{X}_m - w_m \lVert \mathbf{X}_m \rVert_*`, the nuclear norm
    being the sum of the singular values: GenRec-V1's :obj:`denoise_norm`)
    and row-wise L2-normalised (:obj:`normalize`), in this order.

    Args:
        data (HeteroData or Mapping[str, Tensor]): The dataset (its item
            features) or the tables :math:`\mathbf{X}_m` :obj:`[I, F_m]` by
            modality, in order; at least one.
        out_channels (int): :math:`d` (ignored by :obj:`"identity"`).
        projection (str or Mapping[str, str]): :math:`P_m`, one of
            :obj:`PROJECTIONS`. (default: :obj:`"linear"`)
        activation (str or Mapping[str, str], optional): :math:`\sigma_m`,
            :obj:`None` or :obj:`"leaky_relu"`. (default: :obj:`None`)
        weight_init (str): Initialisation of the :obj:`"matrix"` weights,
            :obj:`"xavier_uniform"` or :obj:`"xavier_normal"`.
            (default: :obj:`"xavier_uniform"`)
        dropout (float): Dropout of the :obj:`"block"` projection.
            (default: :obj:`0.0`)
        dtype (torch.dtype, optional): Cast the tables to this type.
            (default: :obj:`None`: as given)
        shift (Mapping[str, float], optional): The weights :math:`w_m` of
            the modalities to shift (a subset). (default: :obj:`None`)
        normalize (bool): L2-normalise the rows of the tables.
            (default: :obj:`False`)

    Shapes:
        - **input:** :obj:`items` :math:`(B)` (optional; all items if
          :obj:`None`)
        - **output:** :math:`\{m: (I, d)\}`, or :math:`\{m: (B, d)\}` for
          :obj:`items` (:math:`(\cdot, F_m)` for :obj:`"identity"`)

    A :obj:`"block"` projection normalises over the rows it is given: the
    projection of a subset of the items is not the subset of the
    projection of all items in training mode. The constructor initialises
    every weight once, drawing as many random numbers as PyTorch's own
    layers would, so that a model keeps its random stream when it composes
    this module instead of its own layers.

    Example:
        >>> features = ModalityFeatures(data, 64, projection='matrix')
        >>> {m: f.shape for m, f in features().items()}  # all items
        {'image': torch.Size([200, 64]), 'text': torch.Size([200, 64])}
        >>> features.project('text', torch.tensor([3, 5])).shape
        torch.Size([2, 64])
    """
    def __init__(
        self,
        data: Union[HeteroData, Mapping[str, Tensor]],
        out_channels: int,
        projection: Union[str, Mapping[str, str]] = 'linear',
        activation: Union[Optional[str], Mapping[str, Optional[str]]] = None,
        weight_init: str = 'xavier_uniform',
        dropout: float = 0.0,
        dtype: Optional[torch.dtype] = None,
        shift: Optional[Mapping[str, float]] = None,
        normalize: bool = False,
    ):
        super().__init__()
        tables = (item_features(data) if isinstance(data, HeteroData) else
                  dict(data))
        if not tables:
            raise ValueError("ModalityFeatures needs at least one item "
                             "feature table (x_image, x_text, ...)")
        unknown = set(shift or {}) - set(tables)
        if unknown:
            raise ValueError(f"'shift' names modalities without features: "
                             f"{sorted(unknown)} (has {list(tables)})")
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f"'weight_init' must be one of "
                             f"{tuple(WEIGHT_INITS)} (got {weight_init!r})")
        #: The modalities, in order.
        self.modalities: List[str] = list(tables)
        self.out_channels, self.weight_init = out_channels, weight_init
        self.dropout, self.normalize = dropout, normalize
        self.shift = dict(shift or {})
        self.projection = per_modality(projection, self.modalities,
                                       'projection')
        self.activation = per_modality(activation, self.modalities,
                                       'activation')
        for m in self.modalities:
            if self.projection[m] not in PROJECTIONS:
                raise ValueError(f"'projection' of {m!r} must be one of "
                                 f"{PROJECTIONS} (got {self.projection[m]!r})")
            if self.activation[m] not in ACTIVATIONS:
                raise ValueError(f"'activation' of {m!r} must be one of "
                                 f"{ACTIVATIONS} (got {self.activation[m]!r})")
        #: The width :math:`F_m` of each table.
        self.in_channels = {m: x.size(1) for m, x in tables.items()}
        self.projections = torch.nn.ModuleDict({
            m: self._projection(self.projection[m], x.size(1))
            for m, x in tables.items()})
        for m, x in tables.items():
            if dtype is not None:
                x = x.to(dtype)
            if m in self.shift:
                x = x - self.shift[m] * torch.linalg.svdvals(x).sum()
            if normalize:
                x = F.normalize(x, dim=1)
            self.register_buffer(f'x_{m}', x, persistent=False)
        self.reset_parameters()

    def _projection(self, kind: str, in_channels: int) -> torch.nn.Module:
        # Uninitialised here (no random draws): reset_parameters() draws
        # each weight once, so that a model composing this module draws as
        # many random numbers as with PyTorch's own layers (exactly so for
        # the uniform initialisations; xavier_normal's sampler draws a few
        # more when the weight has no multiple of 16 entries).
        out = self.out_channels
        if kind == 'identity':
            return torch.nn.Identity()
        if kind == 'block':
            return torch.nn.Sequential(
                skip_init(torch.nn.Linear, in_channels, out),
                skip_init(torch.nn.BatchNorm1d, out),
                torch.nn.LeakyReLU(NEGATIVE_SLOPE),
                torch.nn.Dropout(self.dropout))
        return skip_init(torch.nn.Linear, in_channels, out,
                         bias=kind == 'linear')

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for m, proj in self.projections.items():
            if self.projection[m] == 'matrix':
                WEIGHT_INITS[self.weight_init](proj.weight)
                continue
            for module in proj.modules():
                if isinstance(module, (torch.nn.Linear,
                                       torch.nn.BatchNorm1d)):
                    module.reset_parameters()

    def raw(self, modality: str, items: Optional[Tensor] = None) -> Tensor:
        r"""The table :math:`\mathbf{X}_m` of :obj:`modality`, or its rows
        :obj:`items`."""
        x = getattr(self, f'x_{modality}')
        if items is None:
            return x
        if items.dim() == 1 and items.dtype != torch.bool:
            return x.index_select(0, items)  # faster than x[items] on CPU
        return x[items]

    def project(self, modality: str,
                items: Optional[Tensor] = None) -> Tensor:
        r""":math:`\mathbf{F}_m` of one :obj:`modality`, of all items or
        of :obj:`items` (projected after selecting the rows)."""
        out = self.projections[modality](self.raw(modality, items))
        if self.activation[modality] == 'leaky_relu':
            out = F.leaky_relu(out, NEGATIVE_SLOPE)
        return out

    def forward(self, items: Optional[Tensor] = None) -> Dict[str, Tensor]:
        r"""The projected features of every modality, in order."""
        return {m: self.project(m, items) for m in self.modalities}

    def __repr__(self) -> str:
        def short(option: Dict[str, Any]) -> Any:
            values = set(option.values())
            return repr(values.pop()) if len(values) == 1 else option

        extra = ''
        if set(self.activation.values()) != {None}:
            extra += f', activation={short(self.activation)}'
        if self.shift:
            extra += f', shift={self.shift}'
        if self.normalize:
            extra += ', normalize=True'
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'out_channels={self.out_channels}, '
                f'projection={short(self.projection)}{extra})')


class FixedTables(torch.nn.Module):
    r"""Fixed tensors, iterable as a :class:`torch.nn.ParameterList` and
    read by name as a :class:`torch.nn.ParameterDict` (:obj:`getattr`):
    buffers that move with the module and stay out of its state dict."""
    def __init__(self, tensors: Union[Sequence[Tensor], Mapping[str, Tensor]]):
        super().__init__()
        items = (tensors.items() if isinstance(tensors, Mapping) else
                 ((str(i), t) for i, t in enumerate(tensors)))
        for name, tensor in items:
            self.register_buffer(name, tensor, persistent=False)

    def __iter__(self):
        return iter(self._buffers.values())


def feature_tables(tensors: Union[Sequence[Tensor], Mapping[str, Tensor]],
                   trainable: bool, owned: bool = False) -> torch.nn.Module:
    r"""Tables (a list, or a mapping by name) a model either trains, as
    :class:`torch.nn.ParameterList` / :class:`torch.nn.ParameterDict`
    parameters (copies, unless :obj:`owned`: tensors the caller built for
    the model), or keeps fixed (:class:`FixedTables`: no gradient, no
    optimiser state, rebuilt from the data), *e.g.* the raw item features
    that REARM and BM3 train as their originals do."""
    if not trainable:
        return FixedTables(tensors)

    def parameter(tensor: Tensor) -> torch.nn.Parameter:
        return torch.nn.Parameter(tensor if owned else tensor.clone())
    if isinstance(tensors, Mapping):
        return torch.nn.ParameterDict({k: parameter(t)
                                       for k, t in tensors.items()})
    return torch.nn.ParameterList([parameter(t) for t in tensors])

