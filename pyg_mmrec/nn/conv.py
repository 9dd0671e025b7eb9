r"""Propagation over precomputed, normalised sparse adjacencies."""
from typing import List, Optional

import torch
from torch import Tensor
from torch_geometric.nn import MessagePassing
from torch_geometric.typing import Adj, OptTensor
from torch_geometric.utils import spmm

from ..graphs.receptive import ReceptiveField

COMBINES = ('mean', 'sum', 'last')


def _csr_mm(adj: Tensor, x: Tensor) -> Tensor:
    r""":math:`\mathbf{A}\mathbf{X}` (no autograd) for a CSR :obj:`adj`,
    written into a fresh output by :func:`torch.addmm` with
    :obj:`beta=0` (the output is never read): on the CPU,
    :func:`torch.sparse.mm` zero-fills two :obj:`[M, F]` buffers and copies
    the result, which costs as much as the product on a LightGCN graph
    (same values)."""
    if adj.layout != torch.sparse_csr or x.device.type != 'cpu':
        return torch.sparse.mm(adj, x)
    out = x.new_empty(adj.size(0), x.size(1))
    return torch.addmm(out, adj, x, beta=0, out=out)


class _SpMM(torch.autograd.Function):
    r"""CSR :math:`\mathbf{A}\mathbf{X}` whose backward pass multiplies by a
    precomputed :math:`\mathbf{A}^{\top}` (:math:`\mathbf{A}` itself when
    it is symmetric) instead of letting autograd transpose :math:`\mathbf{A}`
    (a sort of all entries on every call); this halves the cost of a
    propagation's forward + backward."""
    @staticmethod
    def forward(ctx, x: Tensor, adj: Tensor, adj_t: Tensor) -> Tensor:
        ctx.adj_t = adj_t
        return _csr_mm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _csr_mm(ctx.adj_t, grad.contiguous()), None, None


class _FieldPropagation(torch.autograd.Function):
    r""":meth:`LightGCNEncoder.forward_field` in one autograd node: the
    backward pass walks the transposed blocks down the hops and adds each
    layer's share of the output gradient in place, instead of a zero-filled
    gradient per gathered layer and a sum per layer (the same values)."""
    @staticmethod
    def forward(ctx, x: Tensor, field: ReceptiveField,
                combine: str) -> Tensor:
        ctx.field, ctx.combine = field, combine
        num_layers = len(field.blocks)
        out = x.index_select(0, field.targets[-1])
        for layer in range(num_layers):
            hop = num_layers - 1 - layer
            x = _csr_mm(field.blocks[hop], x)
            rows = x.index_select(0, field.targets[hop])
            out = rows if combine == 'last' else out.add_(rows)
        if combine == 'mean':
            out.div_(num_layers + 1)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        field, combine = ctx.field, ctx.combine
        num_layers = len(field.blocks)
        # Every layer's rows of S_0 get `share` (the last layer's only, for
        # 'last'); the layer on S_h is the last layer's gradient walked h
        # hops down (targets[0] is the identity).
        share = grad / (num_layers + 1) if combine == 'mean' else grad
        out = share.contiguous()
        for hop in range(num_layers):
            out = _csr_mm(field.blocks_t[hop], out)
            if combine != 'last':
                out.index_add_(0, field.targets[hop + 1], share)
        return out, None, None


def sparse_mm(adj: Tensor, x: Tensor, adj_t: Optional[Tensor] = None,
              symmetric: bool = False) -> Tensor:
    r"""The product :math:`\mathbf{A}\mathbf{X}` of a sparse matrix and a
    dense one. For a CSR :math:`\mathbf{A}` and an :obj:`x` that requires
    gradient, the backward pass uses :obj:`adj_t` (or :obj:`adj` when
    :obj:`symmetric`), so pass a transpose computed once (e.g. by
    :func:`pyg_mmrec.graphs.csr_transpose`) for a matrix used many times.

    Args:
        adj (torch.Tensor): Sparse :math:`\mathbf{A}` :obj:`[M, N]`.
        x (torch.Tensor): Dense :math:`\mathbf{X}` :obj:`[N, F]`.
        adj_t (torch.Tensor, optional): :math:`\mathbf{A}^{\top}` in CSR.
            (default: :obj:`None`)
        symmetric (bool, optional): Declares :math:`\mathbf{A} =
            \mathbf{A}^{\top}`. (default: :obj:`False`)
    """
    if symmetric:
        adj_t = adj
    if (adj_t is not None and x.requires_grad
            and adj.layout == torch.sparse_csr):
        return _SpMM.apply(x, adj, adj_t)
    if x.requires_grad:
        return torch.sparse.mm(adj, x)
    return _csr_mm(adj, x)


class LightGCNConv(MessagePassing):
    r"""The parameter-free propagation of LightGCN (`"LightGCN: Simplifying
    and Powering Graph Convolution Network for Recommendation"
    <https://arxiv.org/abs/2002.02126>`_) over a **pre-normalised**
    adjacency,

    .. math::
        \mathbf{X}^{\prime} = \tilde{\mathbf{A}} \mathbf{X}, \qquad
        \mathbf{x}^{\prime}_i = \sum_{j} \tilde{a}_{ij} \, \mathbf{x}_j,

    where :math:`\tilde{\mathbf{A}}` is built once (e.g. by
    :func:`pyg_mmrec.graphs.bipartite_adjacency`) and used as is: no
    normalisation happens per call (unlike
    :class:`torch_geometric.nn.conv.LGConv`). A sparse :obj:`adj` is
    multiplied as :math:`\tilde{\mathbf{A}} \mathbf{X}` (row :math:`i`
    gathers from its columns), which matters for non-symmetric matrices.

    Args:
        symmetric (bool, optional): Declares that every adjacency given to
            this layer is symmetric (as the normalised user-item graphs
            are); the backward pass then reuses it instead of transposing
            it, about twice as fast on CPU. (default: :obj:`False`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`, a sparse
          adjacency :math:`(|\mathcal{V}|, |\mathcal{V}|)`
          (:obj:`torch.sparse_csr` tensor or
          :class:`torch_sparse.SparseTensor`), or edge indices
          :math:`(2, |\mathcal{E}|)` in PyG's source-to-target convention
          with optional edge weights :math:`(|\mathcal{E}|)`
        - **output:** node features :math:`(|\mathcal{V}|, F)`
    """
    def __init__(self, symmetric: bool = False, **kwargs):
        kwargs.setdefault('aggr', 'add')
        super().__init__(**kwargs)
        self.symmetric = symmetric

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module (there are none)."""
        super().reset_parameters()

    def forward(self, x: Tensor, adj: Adj,
                edge_weight: OptTensor = None) -> Tensor:
        r"""Runs the forward pass of the module.

        Args:
            x (torch.Tensor): Node features :obj:`[N, F]`.
            adj (torch.Tensor or torch_sparse.SparseTensor): The normalised
                sparse adjacency :obj:`[N, N]`, or :obj:`edge_index`
                :obj:`[2, E]` (messages flow from :obj:`edge_index[0]` to
                :obj:`edge_index[1]`).
            edge_weight (torch.Tensor, optional): Edge weights for an
                :obj:`edge_index` input. (default: :obj:`None`)
        """
        return self.propagate(adj, x=x, edge_weight=edge_weight)

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Adj, x: Tensor) -> Tensor:
        if (self.symmetric and isinstance(adj_t, Tensor)
                and adj_t.layout == torch.sparse_csr):
            return sparse_mm(adj_t, x, symmetric=True)
        return spmm(adj_t, x, reduce=self.aggr)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(symmetric={self.symmetric})'


class LightGCNEncoder(torch.nn.Module):
    r"""Stacks :math:`L` :class:`LightGCNConv` layers and combines the layer
    outputs :math:`\mathbf{X}^{(0)}, \ldots, \mathbf{X}^{(L)}` (layer 0 is the
    input):

    .. math::
        \mathbf{X}^{(l+1)} = \tilde{\mathbf{A}} \mathbf{X}^{(l)}, \qquad
        \mathbf{Z} = \frac{1}{L + 1} \sum_{l=0}^{L} \mathbf{X}^{(l)}
        \;\; (\text{"mean"}), \quad
        \sum_{l=0}^{L} \mathbf{X}^{(l)} \;\; (\text{"sum"}), \quad
        \mathbf{X}^{(L)} \;\; (\text{"last"}).

    Args:
        num_layers (int): The number of propagation layers :math:`L`
            (:obj:`0` returns the input).
        combine (str, optional): :obj:`"mean"`, :obj:`"sum"` or
            :obj:`"last"`. (default: :obj:`"mean"`)
        symmetric (bool, optional): See :class:`LightGCNConv`.
            (default: :obj:`False`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`, sparse
          adjacency :math:`(|\mathcal{V}|, |\mathcal{V}|)`
        - **output:** node features :math:`(|\mathcal{V}|, F)`
    """
    def __init__(self, num_layers: int, combine: str = 'mean',
                 symmetric: bool = False):
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"'num_layers' must be non-negative "
                             f"(got {num_layers})")
        if combine not in COMBINES:
            raise ValueError(f"'combine' must be one of {COMBINES} "
                             f"(got '{combine}')")
        self.num_layers = num_layers
        self.combine = combine
        self.conv = LightGCNConv(symmetric=symmetric)

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module (there are none)."""
        self.conv.reset_parameters()

    def layer_outputs(self, x: Tensor, adj: Adj,
                      edge_weight: OptTensor = None) -> List[Tensor]:
        r"""Returns the list :math:`[\mathbf{X}^{(0)}, \ldots,
        \mathbf{X}^{(L)}]`."""
        outs = [x]
        for _ in range(self.num_layers):
            x = self.conv(x, adj, edge_weight)
            outs.append(x)
        return outs

    def forward(self, x: Tensor, adj: Adj,
                edge_weight: Optional[Tensor] = None) -> Tensor:
        r"""Propagates :obj:`x` over :obj:`adj` and combines the layers."""
        if self.combine == 'last':
            return self.layer_outputs(x, adj, edge_weight)[-1]
        # A running sum, in place after the first layer: no [L + 1, N, F]
        # stack of the layers and one [N, F] allocation per layer (the
        # propagation's own) instead of three; on a large subgraph every
        # fresh allocation is page-faulted in (the sums backpropagate
        # without saving their inputs, so the in-place updates are safe).
        out = x
        for layer in range(self.num_layers):
            x = self.conv(x, adj, edge_weight)
            out = out + x if layer == 0 else out.add_(x)
        if self.combine == 'mean':
            out = (out.div_(self.num_layers + 1) if self.num_layers > 0
                   else out / 1)
        return out

    def forward_field(self, x: Tensor, field: ReceptiveField) -> Tensor:
        r"""The rows :obj:`field.nodes[0]` of :meth:`forward`, computing
        layer :math:`l` on :obj:`field.nodes[L - l]` only (the
        :class:`~pyg_mmrec.graphs.receptive.ReceptiveField` of
        :math:`L` hops of the symmetric adjacency): the same sums in the
        same order, so the same values, at the cost of the receptive field
        instead of the whole graph (e.g. the users and items of one batch).

        Args:
            x (torch.Tensor): The input rows of :obj:`field.nodes[L]`
                :obj:`[|S_L|, F]`.
            field (ReceptiveField): From
                :func:`~pyg_mmrec.graphs.receptive.receptive_field` with
                :obj:`num_hops` equal to :obj:`num_layers`.
        """
        if len(field.blocks) != self.num_layers:
            raise ValueError(f"'field' covers {len(field.blocks)} hops for "
                             f"{self.num_layers} layers")
        return _FieldPropagation.apply(x, field, self.combine)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_layers={self.num_layers}, '
                f"combine='{self.combine}', symmetric={self.conv.symmetric})")
