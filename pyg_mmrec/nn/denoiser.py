r"""The denoisers of DiffMM and MDMNS: an MLP that predicts clean user
interaction rows from noised rows and their diffusion steps, and the
bipartite graph convolution that guides a modality's rows with the features
of the others (see :class:`~pyg_mmrec.nn.GaussianDiffusion`)."""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .embedding import sinusoidal_time_embedding

#: The largest share of nonzero entries of a batch of input rows for which
#: :func:`rows_times_weight` takes the sparse product.
SPARSE_INPUT_DENSITY = 0.01


def rows_times_weight(x: Tensor, weight: Tensor) -> Tensor:
    r"""The first-layer product :math:`\mathbf{X} \mathbf{W}^{\top}` of
    rows :obj:`x` :obj:`[B, I]` and a weight :obj:`[H, I]` (the input
    columns of a denoiser's first linear layer, a view). Rows with at most
    :obj:`SPARSE_INPUT_DENSITY` nonzero entries (clean interaction rows,
    GenRec-V1's flipped rows at low flip rates) take the sparse product,
    :math:`\sum_{i : x_{bi} \neq 0} x_{bi} \mathbf{w}_i` per row (an
    embedding bag over the row's items), on the weight transposed once to
    :obj:`[I, H]`: :math:`O(\mathrm{nnz} \cdot H + I \cdot H)` instead
    of :math:`O(B \cdot I \cdot H)`, the same values up to rounding (in
    float32 under autocast), with gradients. Measured on one thread at
    :math:`B = 1024, I = 50\mathrm{k}, H = 1000` and 0.04 % nonzeros:
    0.34 s against 1.48 s forward, 0.91 s against 3.27 s with the backward;
    at 3 % the dense product is faster."""
    if x.layout == torch.strided:
        if int(torch.count_nonzero(x)) > SPARSE_INPUT_DENSITY * x.numel():
            return x @ weight.t()
        x = x.to_sparse()
    weight_t = weight.t().contiguous()
    return torch.sparse.mm(x.to(weight_t.dtype), weight_t)


class Denoiser(torch.nn.Module):
    r"""The MLP denoiser of DiffMM and MDMNS: it predicts clean interaction
    rows :math:`\hat{\mathbf{x}}_0` from noised rows :math:`\mathbf{x}_t`
    and their steps :math:`t`,

    .. math::
        \mathbf{e}_t = \mathbf{W}_e \, \mathrm{emb}(t) + \mathbf{b}_e,
        \qquad
        \hat{\mathbf{x}}_0 = \mathbf{W}_2 \tanh\!\left(\mathbf{W}_1
        [\mathrm{drop}(\tilde{\mathbf{x}}_t) \,\|\, \mathbf{e}_t] +
        \mathbf{b}_1\right) + \mathbf{b}_2,

    where :math:`\mathrm{emb}` is
    :func:`~pyg_mmrec.nn.sinusoidal_time_embedding` (frequency scale
    :math:`1`), :math:`\tilde{\mathbf{x}}_t` is :math:`\mathbf{x}_t` or, with
    :obj:`normalize_input`, its :math:`L_2`-normalised rows, and
    :math:`\mathrm{drop}` is dropout (active in training mode only). The
    output has no activation.

    Args:
        num_items (int): Row length :math:`I` (the number of items).
        hidden_channels (int, optional): Hidden size. (default: :obj:`1000`)
        time_channels (int, optional): Size of the step embedding.
            (default: :obj:`10`)
        dropout (float, optional): Dropout probability on the input rows.
            (default: :obj:`0.5`)
        normalize_input (bool, optional): :math:`L_2`-normalise the input
            rows first. (default: :obj:`False`)

    Shapes:
        - **input:** rows :math:`(B, I)`, steps :math:`(B)`
        - **output:** predicted clean rows :math:`(B, I)`
    """
    def __init__(self, num_items: int, hidden_channels: int = 1000,
                 time_channels: int = 10, dropout: float = 0.5,
                 normalize_input: bool = False):
        super().__init__()
        if num_items < 1:
            raise ValueError(f"'num_items' must be positive "
                             f"(got {num_items})")
        if hidden_channels < 1:
            raise ValueError(f"'hidden_channels' must be positive "
                             f"(got {hidden_channels})")
        if time_channels < 1:
            raise ValueError(f"'time_channels' must be positive "
                             f"(got {time_channels})")
        if not 0 <= dropout < 1:
            raise ValueError(f"'dropout' must be in [0, 1) (got {dropout})")
        self.num_items = num_items
        self.hidden_channels = hidden_channels
        self.time_channels = time_channels
        self.normalize_input = normalize_input
        self.time_lin = torch.nn.Linear(time_channels, time_channels)
        self.lin1 = torch.nn.Linear(num_items + time_channels,
                                    hidden_channels)
        self.lin2 = torch.nn.Linear(hidden_channels, num_items)
        self.dropout = torch.nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module: every weight
        :math:`\sim \mathcal{N}(0, 2 / (\mathrm{fan\_in} +
        \mathrm{fan\_out}))`, every bias :math:`\sim \mathcal{N}(0,
        0.001^2)`."""
        for lin in (self.time_lin, self.lin1, self.lin2):
            fan_out, fan_in = lin.weight.shape
            std = math.sqrt(2.0 / (fan_in + fan_out))
            torch.nn.init.normal_(lin.weight, mean=0.0, std=std)
            torch.nn.init.normal_(lin.bias, mean=0.0, std=0.001)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        r"""Predicts clean rows.

        Args:
            x (torch.Tensor): Noised rows :obj:`[B, I]`.
            t (torch.Tensor): Steps :obj:`[B]` (or a 0-dim tensor for all).
        """
        if x.dim() != 2 or x.size(-1) != self.num_items:
            raise ValueError(f"'x' must have shape [B, {self.num_items}] "
                             f"(got {tuple(x.shape)})")
        t = t.to(x.device).reshape(-1).expand(x.size(0))
        # Steps embedded in float32 whatever t's dtype:
        emb = sinusoidal_time_embedding(t.float(), self.time_channels)
        emb = self.time_lin(emb.to(self.time_lin.weight.dtype))
        if self.normalize_input:
            x = F.normalize(x, dim=-1)
        x = self.dropout(x)
        # lin1([x || e]) without the [B, I + 10] copy of the rows:
        w = self.lin1.weight
        h = rows_times_weight(x, w[:, :self.num_items]) + F.linear(
            emb, w[:, self.num_items:], self.lin1.bias)
        return self.lin2(torch.tanh(h))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_items}, '
                f'hidden_channels={self.hidden_channels})')


class BipartiteGuidance(torch.nn.Module):
    r"""The conditional guidance of MDMNS: one graph convolution on the
    weighted bipartite graph of a batch of (noisy) user rows
    :math:`\mathbf{W} \in \mathbb{R}^{B \times I}` with self-loops, whose
    item nodes carry (projected) guide features of other modalities; the
    output is the user-item score matrix of the propagated nodes,

    .. math::
        \mathbf{h}_u = \frac{\mathbf{r}_u}{d_u} + \sum_i
        \frac{w_{ui}}{\sqrt{d_u d_i}} \mathbf{f}_i, \qquad
        \mathbf{h}_i = \frac{\mathbf{f}_i}{d_i} + \sum_u
        \frac{w_{ui}}{\sqrt{d_u d_i}} \mathbf{r}_u, \qquad
        \tilde{x}_{ui} = \langle \mathbf{W}_o \mathbf{h}_u + \mathbf{b}_o,
        \mathbf{W}_o \mathbf{h}_i + \mathbf{b}_o \rangle,

    with :math:`\mathbf{f}_i = \mathbf{W}_g \mathbf{g}_i + \mathbf{b}_g`
    the item features from the guide :math:`\mathbf{g}`,
    :math:`\mathbf{r}_u \sim \mathcal{N}(\mathbf{0}, \mathbf{I})` random user
    features, and the degrees of :math:`\mathbf{W} + \mathbf{I}`,
    :math:`d_u = 1 + \sum_i w_{ui}`, :math:`d_i = 1 + \sum_u w_{ui}`.

    The normalised :math:`(B + I)^2` adjacency is never formed: both halves
    of the product are two dense :obj:`[B, I]` products, the size of the
    input itself. Noise can make a degree of a noisy row negative, where
    :math:`d^{-1/2}` is undefined; degrees are clamped at the self-loop's
    :math:`1`.

    Args:
        in_channels (int): Size of the guide features.
        hidden_channels (int, optional): Size of the node features.
            (default: :obj:`64`)

    Shapes:
        - **input:** rows :math:`(B, I)`, guide :math:`(I, F_{in})`
        - **output:** guided rows :math:`(B, I)`
    """
    def __init__(self, in_channels: int, hidden_channels: int = 64):
        super().__init__()
        if in_channels < 1 or hidden_channels < 1:
            raise ValueError(f"'in_channels' and 'hidden_channels' must be "
                             f"positive (got {in_channels}, "
                             f"{hidden_channels})")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.lin_guide = torch.nn.Linear(in_channels, hidden_channels)
        self.lin_out = torch.nn.Linear(hidden_channels, hidden_channels)

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.lin_guide.reset_parameters()
        self.lin_out.reset_parameters()

    def forward(self, rows: Tensor, guide: Tensor,
                generator: Optional[torch.Generator] = None) -> Tensor:
        if guide.dim() != 2 or guide.size(0) != rows.size(1):
            raise ValueError(f"'guide' must have shape [{rows.size(1)}, "
                             f"{self.in_channels}] (got "
                             f"{tuple(guide.shape)})")
        f_item = self.lin_guide(guide)
        f_user = torch.randn(rows.size(0), self.hidden_channels,
                             generator=generator, device=rows.device,
                             dtype=f_item.dtype)
        s_user = (1.0 + rows.sum(dim=1)).clamp(min=1.0).rsqrt().unsqueeze(1)
        s_item = (1.0 + rows.sum(dim=0)).clamp(min=1.0).rsqrt().unsqueeze(1)
        h_user = s_user.pow(2) * f_user + s_user * (rows @ (s_item * f_item))
        h_item = (s_item.pow(2) * f_item +
                  s_item * (rows.t() @ (s_user * f_user)))
        return self.lin_out(h_user) @ self.lin_out(h_item).t()

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'hidden_channels={self.hidden_channels})')


class _DecoderLayer(torch.nn.Module):
    # The parameters of one post-norm nn.TransformerDecoderLayer that a
    # length-1 sequence with a zero memory uses (see FlipTransformerDenoiser).
    def __init__(self, channels: int, heads: int, ff_channels: int,
                 dropout: float):
        super().__init__()
        self.heads, self.p = heads, dropout
        self.self_value = torch.nn.Linear(channels, channels)
        self.self_out = torch.nn.Linear(channels, channels)
        self.cross_value_bias = torch.nn.Parameter(torch.empty(channels))
        self.cross_out = torch.nn.Linear(channels, channels)
        self.lin1 = torch.nn.Linear(channels, ff_channels)
        self.lin2 = torch.nn.Linear(ff_channels, channels)
        self.norms = torch.nn.ModuleList(
            [torch.nn.LayerNorm(channels) for _ in range(3)])

    def _head_keep(self, b: int, device) -> Optional[Tensor]:
        # Dropout on the attention weights (all ones for one key): each
        # head's value is kept (scaled by 1 / (1 - p)) or zeroed.
        if not self.training or self.p == 0:
            return None
        keep = torch.rand(b, self.heads, device=device) >= self.p
        return keep.float() / (1 - self.p)

    def _heads_dropped(self, v: Tensor) -> Tensor:
        scale = self._head_keep(v.size(0), v.device)
        if scale is None:
            return v
        b, d = v.shape
        scale = scale.to(v.dtype).unsqueeze(-1)
        return (v.view(b, self.heads, d // self.heads) * scale).view(b, d)

    def _cross_attention(self, h: Tensor) -> Tensor:
        # W_o drop(b_v) + b_o: the per-head parts of W_o b_v, mixed by the
        # rows' head masks, never a [B, d] x [d, d] product of a constant.
        d = h.size(1)
        w = self.cross_out.weight.view(d, self.heads, d // self.heads)
        parts = torch.einsum('ohk,hk->ho', w, self.cross_value_bias.view(
            self.heads, d // self.heads))  # [H, d]
        scale = self._head_keep(h.size(0), h.device)
        if scale is None:
            return (parts.sum(0) + self.cross_out.bias).expand_as(h)
        return torch.addmm(self.cross_out.bias, scale.to(h.dtype), parts)

    def forward(self, h: Tensor) -> Tensor:
        drop = lambda x: F.dropout(x, self.p, self.training)  # noqa: E731
        if self.training and self.p > 0 or h.size(0) < h.size(1):
            sa = self.self_out(self._heads_dropped(self.self_value(h)))
        else:  # W_o (W_v h + b_v) + b_o as one product (no dropout)
            v, o = self.self_value, self.self_out
            sa = F.linear(h, o.weight @ v.weight,
                          torch.addmv(o.bias, o.weight, v.bias))
        h = self.norms[0](h + drop(sa))
        h = self.norms[1](h + drop(self._cross_attention(h)))
        ff = self.lin2(drop(F.relu(self.lin1(h))))
        return self.norms[2](h + drop(ff))

    @torch.no_grad()
    def load_from(self, layer: torch.nn.TransformerDecoderLayer) -> None:
        d = self.self_value.in_features
        sa, ca = layer.self_attn, layer.multihead_attn
        self.self_value.weight.copy_(sa.in_proj_weight[2 * d:])
        self.self_value.bias.copy_(sa.in_proj_bias[2 * d:])
        self.self_out.load_state_dict(sa.out_proj.state_dict())
        self.cross_value_bias.copy_(ca.in_proj_bias[2 * d:])
        self.cross_out.load_state_dict(ca.out_proj.state_dict())
        self.lin1.load_state_dict(layer.linear1.state_dict())
        self.lin2.load_state_dict(layer.linear2.state_dict())
        for norm, ref in zip(self.norms,
                             (layer.norm1, layer.norm2, layer.norm3)):
            norm.load_state_dict(ref.state_dict())


class FlipTransformerDenoiser(torch.nn.Module):
    r"""The adaLN Transformer denoiser of GenRec-V1: it maps flipped binary
    rows :math:`\mathbf{x}_t` and their steps :math:`t` to the logits of
    :math:`P(x_0 = 1)` (see :class:`~pyg_mmrec.nn.BitFlipDiffusion`),

    .. math::
        \mathbf{e}_t = \mathbf{W}_e \, \mathrm{emb}(t) + \mathbf{b}_e,
        \quad
        \mathbf{h} = \mathbf{W}_{in} [\mathbf{x}_t \,\|\, \mathbf{e}_t] +
        \mathbf{b}_{in}, \quad
        [\boldsymbol{\beta} \,\|\, \boldsymbol{\sigma}] =
        \mathbf{W}_a \, \mathrm{SiLU}(\mathbf{e}_t) + \mathbf{b}_a, \quad
        \mathbf{h} \leftarrow \mathbf{h} \odot (1 + \boldsymbol{\sigma}) +
        \boldsymbol{\beta},

    then :obj:`num_layers` post-norm :class:`torch.nn.TransformerDecoder`
    layers (ReLU feed-forward) on :math:`\mathbf{h}` as a sequence of
    length one with a zero memory, and the head
    :math:`\mathrm{Linear} \to \mathrm{LayerNorm} \to \mathrm{GELU} \to
    \mathrm{Linear}` to :math:`I` logits.

    **Length one.** With one query and one key the attention weights are
    all one, so self-attention is :math:`\mathbf{W}_o (\mathbf{W}_v
    \mathbf{h} + \mathbf{b}_v) + \mathbf{b}_o` (queries and keys cancel)
    and the cross-attention on the zero memory is the constant
    :math:`\mathbf{W}_o \mathbf{b}_v + \mathbf{b}_o`; attention dropout on
    the single weight keeps or zeroes each head's value. Each layer is
    computed that way here, which is :class:`torch.nn.TransformerDecoder`
    exactly (in evaluation mode; in training mode in distribution), with
    only the parameters it uses: the query/key projections and the
    cross-attention's value weights have no effect on the output and do
    not exist here (:meth:`load_transformer_decoder` copies the others
    from a :class:`torch.nn.TransformerDecoder`). Every linear layer is
    Xavier-uniform with bias :math:`0.01`, the value projections as
    PyTorch initialises the packed :obj:`in_proj_weight` (Xavier over its
    :math:`[3d, d]` shape, bias zero), as in the original.

    Args:
        num_items (int): Row length :math:`I`.
        hidden_channels (int, optional): :math:`d`. (default: :obj:`512`)
        time_channels (int, optional): Size of the step embedding.
            (default: :obj:`10`)
        num_layers (int, optional): Decoder layers. (default: :obj:`6`)
        heads (int, optional): Attention heads. (default: :obj:`8`)
        ff_channels (int, optional): Feed-forward size. (default:
            :obj:`512`)
        head_channels (int, optional): Hidden size of the output head.
            (default: :obj:`256`)
        dropout (float, optional): Dropout of the decoder layers.
            (default: :obj:`0.2`)

    Shapes:
        - **input:** rows :math:`(B, I)`, steps :math:`(B)`
        - **output:** logits :math:`(B, I)`
    """
    def __init__(self, num_items: int, hidden_channels: int = 512,
                 time_channels: int = 10, num_layers: int = 6,
                 heads: int = 8, ff_channels: int = 512,
                 head_channels: int = 256, dropout: float = 0.2):
        super().__init__()
        for name, value in (('num_items', num_items),
                            ('hidden_channels', hidden_channels),
                            ('time_channels', time_channels),
                            ('heads', heads), ('ff_channels', ff_channels),
                            ('head_channels', head_channels)):
            if value < 1:
                raise ValueError(f"'{name}' must be positive (got {value})")
        if num_layers < 0:
            raise ValueError(f"'num_layers' must be non-negative "
                             f"(got {num_layers})")
        if hidden_channels % heads != 0:
            raise ValueError(f"'hidden_channels' ({hidden_channels}) must be "
                             f"divisible by 'heads' ({heads})")
        if not 0 <= dropout < 1:
            raise ValueError(f"'dropout' must be in [0, 1) (got {dropout})")
        self.num_items, self.hidden_channels = num_items, hidden_channels
        self.time_channels, self.num_layers = time_channels, num_layers
        self.heads = heads
        self.time_lin = torch.nn.Linear(time_channels, time_channels)
        self.lin_in = torch.nn.Linear(num_items + time_channels,
                                      hidden_channels)
        self.ada_ln = torch.nn.Linear(time_channels, 2 * hidden_channels)
        self.layers = torch.nn.ModuleList([
            _DecoderLayer(hidden_channels, heads, ff_channels, dropout)
            for _ in range(num_layers)])
        self.head = torch.nn.Sequential(
            torch.nn.Linear(hidden_channels, head_channels),
            torch.nn.LayerNorm(head_channels), torch.nn.GELU(),
            torch.nn.Linear(head_channels, num_items))
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        d = self.hidden_channels
        bound = math.sqrt(6.0 / (4 * d))  # Xavier over the packed [3d, d]
        for module in self.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
                torch.nn.init.constant_(module.bias, 0.01)
            elif isinstance(module, torch.nn.LayerNorm):
                module.reset_parameters()
        for layer in self.layers:
            torch.nn.init.uniform_(layer.self_value.weight, -bound, bound)
            torch.nn.init.zeros_(layer.self_value.bias)
            torch.nn.init.zeros_(layer.cross_value_bias)

    def load_transformer_decoder(self,
                                 decoder: torch.nn.TransformerDecoder
                                 ) -> None:
        r"""Copies the parameters this module uses from a post-norm
        :class:`torch.nn.TransformerDecoder` of the same sizes."""
        if len(decoder.layers) != len(self.layers):
            raise ValueError(f"'decoder' has {len(decoder.layers)} layers, "
                             f"this module {len(self.layers)}")
        for layer, ref in zip(self.layers, decoder.layers):
            if ref.norm_first:
                raise ValueError("'decoder' must be post-norm "
                                 "(norm_first=False)")
            layer.load_from(ref)

    def adaln_input(self, x: Tensor, t: Tensor) -> Tensor:
        r"""The modulated input :math:`\mathbf{h}` of the decoder."""
        if x.dim() != 2 or x.size(-1) != self.num_items:
            raise ValueError(f"'x' must have shape [B, {self.num_items}] "
                             f"(got {tuple(x.shape)})")
        t = t.to(x.device).reshape(-1).expand(x.size(0))
        emb = self.time_lin(sinusoidal_time_embedding(t.float(),
                                                      self.time_channels))
        # lin_in([x || e]) without the [B, I + 10] copy of the rows:
        w = self.lin_in.weight
        h = rows_times_weight(x, w[:, :self.num_items]) + F.linear(
            emb, w[:, self.num_items:], self.lin_in.bias)
        shift, scale = self.ada_ln(F.silu(emb)).chunk(2, dim=-1)
        return h * (1 + scale) + shift

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        h = self.adaln_input(x, t)
        for layer in self.layers:
            h = layer(h)
        return self.head(h)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_items}, '
                f'hidden_channels={self.hidden_channels}, '
                f'num_layers={self.num_layers}, heads={self.heads})')
