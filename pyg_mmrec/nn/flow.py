r"""Discrete mask-interpolation flow matching with a frequency prior (the
generator of FMCNS), usable by any model that wants to generate item
embeddings from per-item modality conditions."""
import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .embedding import sinusoidal_time_embedding


def frequency_prior(freq: Tensor, dim: int,
                    generator: Optional[torch.Generator] = None) -> Tensor:
    r"""The frequency-based prior of FMCNS: every coordinate of row :math:`i`
    is an independent :math:`\mathrm{Bernoulli}(f_i)` draw,

    .. math::
        x_{0, ik} \sim \mathrm{Bernoulli}(f_i), \qquad k = 1, \ldots, d.

    Args:
        freq (torch.Tensor): Per-row probabilities :math:`f_i \in [0, 1]`
            :obj:`[N]` (an item's training frequency).
        dim (int): Number of coordinates :math:`d` per row.
        generator (torch.Generator, optional): Random generator on
            :obj:`freq`'s device. (default: :obj:`None`)

    Returns:
        torch.Tensor: A :obj:`{0, 1}` tensor :obj:`[N, dim]` with
        :obj:`freq`'s (floating) dtype.
    """
    dtype = freq.dtype if freq.is_floating_point() else torch.float
    u = torch.rand(freq.numel(), dim, generator=generator,
                   device=freq.device, dtype=dtype)
    return (u < freq.reshape(-1, 1)).to(dtype)


def mask_interpolate(x1: Tensor, x0: Tensor, t: Tensor,
                     generator: Optional[torch.Generator] = None) -> Tensor:
    r"""Discrete mask interpolation between the prior :math:`\mathbf{x}_0`
    and the data :math:`\mathbf{x}_1`: every coordinate independently takes
    the data value with probability :math:`t` of its row,

    .. math::
        x_{t, ik} = \begin{cases} x_{1, ik} & u_{ik} < t_i \\
        x_{0, ik} & \text{otherwise} \end{cases}, \qquad
        u_{ik} \sim \mathcal{U}[0, 1).

    The comparison is strict and :math:`u` is drawn by :func:`torch.rand`
    (values in :math:`[0, 1)`), so :math:`t = 0` returns :math:`\mathbf{x}_0`
    and :math:`t = 1` returns :math:`\mathbf{x}_1` exactly, even when a draw
    is exactly :math:`0`. (The original writes :math:`u \le t`; the two agree
    with probability one for :math:`0 < t < 1`.)

    Args:
        x1 (torch.Tensor): Data :obj:`[N, d]`.
        x0 (torch.Tensor): Prior sample :obj:`[N, d]`.
        t (torch.Tensor): Times :obj:`[N]` (or a 0-dim tensor for all rows).
        generator (torch.Generator, optional): Random generator on
            :obj:`x1`'s device. (default: :obj:`None`)

    Returns:
        torch.Tensor: :math:`\mathbf{x}_t` :obj:`[N, d]`.
    """
    if x1.shape != x0.shape:
        raise ValueError(f"'x1' and 'x0' must have the same shape (got "
                         f"{tuple(x1.shape)} and {tuple(x0.shape)})")
    dtype = x1.dtype if x1.is_floating_point() else torch.float
    u = torch.rand(x1.shape, generator=generator, device=x1.device,
                   dtype=dtype)
    t = t.to(device=x1.device, dtype=dtype)
    t = t.reshape(-1, *([1] * (x1.dim() - 1)))
    return torch.where(u < t, x1, x0.to(x1.dtype))


class _BatchedScores(torch.autograd.Function):
    r""":math:`\mathbf{A}\mathbf{B}^{\top}` of batches of small matrices
    :obj:`[N, T, d]`, whose backward pass multiplies in the :obj:`[N, T, d]`
    layout (:math:`\mathbf{G}\mathbf{B}`, :math:`\mathbf{G}^{\top}
    \mathbf{A}`); autograd's gradient of the transposed operand goes
    through :obj:`[N, d, T]` products, four times slower for :math:`T = 4`
    on the CPU."""
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(a, b)
        return torch.bmm(a, b.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, b = ctx.saved_tensors
        grad_a = torch.bmm(grad, b) if ctx.needs_input_grad[0] else None
        grad_b = (torch.bmm(grad.transpose(1, 2), a)
                  if ctx.needs_input_grad[1] else None)
        return grad_a, grad_b


class FlowMatchingGenerator(torch.nn.Module):
    r"""The one-block attention flow-matching generator of FMCNS, "Flow
    Matching with Causal-aware Negative Sampling" for multimodal
    recommendation (code: `zhaxinji/FMCNS
    <https://github.com/zhaxinji/FMCNS>`_).

    The state :math:`\mathbf{x}_t` moves from a frequency prior
    :math:`\mathbf{x}_0 \sim \mathrm{Bernoulli}(f_i)` (see
    :func:`frequency_prior`) to the data :math:`\mathbf{x}_1` (an item
    embedding) by mask interpolation (:func:`mask_interpolate`). The
    denoiser predicts :math:`\mathbf{x}_1` directly (x-prediction): for every
    row it builds the :math:`T = M + 2` tokens
    :math:`[\mathbf{x}_t, \mathbf{c}^{(1)}, \ldots, \mathbf{c}^{(M)},
    \mathrm{emb}(t)]` (one condition per modality, e.g. projected image and
    text features, and :func:`~pyg_mmrec.nn.sinusoidal_time_embedding` with
    frequency scale :math:`2\pi`), layer-normalises each token (no affine
    parameters) and runs single-head self-attention over them,

    .. math::
        \mathbf{Z} = \mathrm{LN}([\mathbf{x}_t; \mathbf{c}^{(1)}; \ldots;
        \mathbf{c}^{(M)}; \mathrm{emb}(t)]) \in \mathbb{R}^{T \times d},
        \qquad
        \hat{\mathbf{x}}_1 = \frac{1}{T} \sum_{j=1}^{T}
        \left[\mathrm{softmax}\!\left(\frac{\mathbf{Z}\mathbf{W}_q
        (\mathbf{Z}\mathbf{W}_k)^{\top}}{\sqrt{d}}\right)
        \mathbf{Z}\mathbf{W}_v\right]_j,

    trained with :math:`\mathcal{L}_{\mathrm{flow}} =
    \lVert \hat{\mathbf{x}}_1 - \mathbf{x}_1 \rVert^2` averaged over all
    elements, :math:`t \sim \mathcal{U}[0, 1)` per row (see :meth:`loss`).
    The output is invariant to the order of the tokens, so the order of the
    conditions does not matter. It is computed as
    :math:`\mathrm{softmax}(\mathbf{Z}\mathbf{W}_q^{\top}\mathbf{W}_k
    \mathbf{Z}^{\top} / \sqrt{d})` and :math:`(\frac{1}{T}\mathbf{1}^{\top}
    \mathbf{A}\mathbf{Z})\mathbf{W}_v^{\top}`, the same function with
    one projection of the tokens instead of three. :meth:`sample`
    generates embeddings in a few Euler steps; see there for the faithful
    and the corrected sampler.

    Differences from the original: the conditions are any number of
    tensors (the original hard-codes text and image; TikTok also has audio);
    the original's second network :obj:`FlowModel`, whose parameters were
    optimised but never used, is not carried over; :meth:`loss` detaches the
    target by default (:obj:`detach_target=False` is the original).

    Args:
        dim (int, optional): Embedding size :math:`d` (even, for the time
            embedding). (default: :obj:`64`)
        num_conditions (int, optional): The number :math:`M` of condition
            tensors :meth:`forward` expects; :obj:`None` accepts any number.
            The weights do not depend on it; it guards against a forgotten
            modality. (default: :obj:`2`)

    Shapes:
        - **input:** state :math:`(N, d)`, :math:`M` conditions
          :math:`(N, d)`, times :math:`(N)`
        - **output:** predicted data :math:`(N, d)`
    """
    def __init__(self, dim: int = 64, num_conditions: Optional[int] = 2):
        super().__init__()
        if dim <= 0 or dim % 2 != 0:
            raise ValueError(f"'dim' must be a positive even number "
                             f"(got {dim})")
        if num_conditions is not None and num_conditions < 0:
            raise ValueError(f"'num_conditions' must be non-negative "
                             f"(got {num_conditions})")
        self.dim = dim
        self.num_conditions = num_conditions
        self.lin_q = torch.nn.Linear(dim, dim, bias=False)
        self.lin_k = torch.nn.Linear(dim, dim, bias=False)
        self.lin_v = torch.nn.Linear(dim, dim, bias=False)
        self.norm = torch.nn.LayerNorm(dim, elementwise_affine=False)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module (Xavier-normal
        :math:`\mathbf{W}_q, \mathbf{W}_k, \mathbf{W}_v`)."""
        for lin in (self.lin_q, self.lin_k, self.lin_v):
            torch.nn.init.xavier_normal_(lin.weight)

    def _check(self, x: Tensor, conditions: List[Tensor]):
        if (self.num_conditions is not None
                and len(conditions) != self.num_conditions):
            raise ValueError(f"{self.__class__.__name__} expects "
                             f"{self.num_conditions} conditions (got "
                             f"{len(conditions)})")
        for c in conditions:
            if c.shape != x.shape:
                raise ValueError(f"every condition must have the state's "
                                 f"shape {tuple(x.shape)} (got "
                                 f"{tuple(c.shape)})")

    def forward(self, x_t: Tensor, conditions: List[Tensor],
                t: Tensor) -> Tensor:
        r"""Predicts the data :math:`\hat{\mathbf{x}}_1` from the state.

        Args:
            x_t (torch.Tensor): The state :obj:`[N, d]`.
            conditions (List[torch.Tensor]): One :obj:`[N, d]` tensor per
                modality (e.g. projected features of the same items).
            t (torch.Tensor): Times :obj:`[N]` (or a 0-dim tensor for all).
        """
        self._check(x_t, conditions)
        t = t.to(x_t).reshape(-1).expand(x_t.size(0))
        emb = sinusoidal_time_embedding(t, self.dim,
                                        frequency_scale=2 * math.pi)
        tokens = self.norm(torch.stack([x_t, *conditions, emb], dim=1))
        # The same function with fewer products: the scores
        # (Z W_q^T)(Z W_k^T)^T = (Z (W_q^T W_k)) Z^T project the tokens
        # once instead of twice, and the mean over the queries of
        # attn (Z W_v^T) is (mean of attn's rows) Z W_v^T, one value
        # projection per row instead of one per token.
        qk = tokens @ (self.lin_q.weight.t() @ self.lin_k.weight)
        attn = torch.softmax(_BatchedScores.apply(qk, tokens) /
                             math.sqrt(self.dim), dim=-1)  # [N, T, T]
        # (Broadcast: a batched [1, T] x [T, d] product is slower.)
        pooled = (attn.mean(dim=1).unsqueeze(-1) * tokens).sum(dim=1)
        return self.lin_v(pooled)

    def loss(self, x1: Tensor, conditions: List[Tensor], freq: Tensor,
             generator: Optional[torch.Generator] = None,
             detach_target: bool = True) -> Tuple[Tensor, Tensor]:
        r"""The flow-matching loss on a batch of rows,

        .. math::
            t_i \sim \mathcal{U}[0, 1), \quad
            \mathbf{x}_0 \sim \mathrm{Bernoulli}(f_i), \quad
            \mathbf{x}_t = \mathrm{mask}(\mathbf{x}_1, \mathbf{x}_0, t), \quad
            \mathcal{L} = \mathrm{MSE}(\hat{\mathbf{x}}_1(\mathbf{x}_t, t),
            \mathbf{x}_1).

        Args:
            x1 (torch.Tensor): Data :obj:`[N, d]` (e.g. the batch items' ID
                embeddings).
            conditions (List[torch.Tensor]): One :obj:`[N, d]` per modality.
            freq (torch.Tensor): Prior probabilities :obj:`[N]` (the rows'
                item frequencies).
            generator (torch.Generator, optional): Random generator.
                (default: :obj:`None`)
            detach_target (bool, optional): Detach :math:`\mathbf{x}_1`,
                both as the regression target and inside the state
                :math:`\mathbf{x}_t`, so that neither this loss nor anything
                computed from :math:`\hat{\mathbf{x}}_1` sends gradient into
                :math:`\mathbf{x}_1` (the generator and the conditions are
                still trained). The original does not detach, so
                :math:`\mathcal{L}` also pulls the embeddings towards the
                denoiser output; pass :obj:`False` to reproduce that.
                (default: :obj:`True`)

        Returns:
            (torch.Tensor, torch.Tensor): The scalar loss and the prediction
            :math:`\hat{\mathbf{x}}_1` :obj:`[N, d]` (with gradient).
        """
        if detach_target:
            x1 = x1.detach()
        t = torch.rand(x1.size(0), generator=generator, device=x1.device,
                       dtype=x1.dtype)
        x0 = frequency_prior(freq.to(x1), x1.size(1), generator)
        x_t = mask_interpolate(x1, x0, t, generator)
        x_hat = self(x_t, conditions, t)
        return F.mse_loss(x_hat, x1), x_hat

    @torch.no_grad()
    def sample(self, conditions: List[Tensor], freq: Tensor,
               num_steps: int = 10, start_step: Optional[int] = None,
               binarize: bool = False,
               generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Generates data for every row of :obj:`conditions` in a few steps
        (without gradient). With :math:`n` = :obj:`num_steps`, :math:`s` =
        :obj:`start_step` and :math:`t_k = k / n`:

        1. :math:`\mathbf{x} \leftarrow \mathbf{x}_0 \sim
           \mathrm{Bernoulli}(f_i)`.
        2. For :math:`k = s, \ldots, n - 2`, an Euler step along the velocity
           of the x-prediction,

           .. math::
               \mathbf{x} \leftarrow \mathbf{x} + \frac{1}{n}
               \frac{\hat{\mathbf{x}}_1(\mathbf{x}, t_k) - \mathbf{x}}
               {1 - t_k},

           followed, if :obj:`binarize`, by
           :math:`\mathbf{x} \leftarrow \mathbb{1}[\mathbf{x} \ge 0.5]
           \lor \mathbf{x}_0`.
        3. Return the prediction :math:`\hat{\mathbf{x}}_1(\mathbf{x},
           t_{n-1})` (continuous). This is exactly where the last Euler step
           from :math:`t_{n-1}` to :math:`1` would land.

        **Corrected (default)**: :obj:`start_step=0`, :obj:`binarize=False`:
        integrate from the prior at :math:`t = 0` over all :math:`n` steps.

        **Faithful** (the original FMCNS, :obj:`n_steps=10, s_steps=2`):
        :obj:`num_steps=10, start_step=8, binarize=True`. It starts from the
        pure prior at :math:`t = 0.8` (a state the denoiser sees in training
        only at :math:`t \approx 0`), makes one Euler step (at
        :math:`t = 0.8` it lands on the midpoint of :math:`\mathbf{x}` and
        :math:`\hat{\mathbf{x}}_1`), binarises it and ORs it with the prior
        bits, and returns the denoiser output at :math:`t = 0.9`. The
        binarisation destroys the state: the targets are embeddings of size
        :math:`\approx \pm 0.03`, so the midpoint is almost never
        :math:`\ge 0.5` and the state collapses back to the prior bits.

        Args:
            conditions (List[torch.Tensor]): One :obj:`[N, d]` per modality.
            freq (torch.Tensor): Prior probabilities :obj:`[N]`.
            num_steps (int, optional): Number of steps :math:`n` of the time
                grid. (default: :obj:`10`)
            start_step (int, optional): First step :math:`s`,
                :math:`0 \le s \le n - 1`; :obj:`None` means :obj:`0`, or
                :obj:`num_steps - 2` when :obj:`binarize` is set (the
                original's :obj:`s_steps=2`). (default: :obj:`None`)
            binarize (bool, optional): Binarise and OR with the prior after
                each Euler step, as the original does. (default: :obj:`False`)
            generator (torch.Generator, optional): Random generator for the
                prior. (default: :obj:`None`)

        Returns:
            torch.Tensor: Generated data :obj:`[N, d]`.
        """
        if num_steps < 1:
            raise ValueError(f"'num_steps' must be positive (got {num_steps})")
        if start_step is None:
            start_step = max(num_steps - 2, 0) if binarize else 0
        if not 0 <= start_step <= num_steps - 1:
            raise ValueError(f"'start_step' must be in [0, {num_steps - 1}] "
                             f"(got {start_step})")
        if len(conditions) == 0:
            raise ValueError("'sample' needs at least one condition (it "
                             "fixes the number of rows and the device)")
        ref = conditions[0]
        x0 = frequency_prior(freq.to(ref), self.dim, generator)
        x = x0
        for k in range(start_step, num_steps - 1):
            t = k / num_steps
            t_vec = torch.full((x.size(0), ), t, dtype=x.dtype,
                               device=x.device)
            x_hat = self(x, conditions, t_vec)
            x = x + (x_hat - x) / (1.0 - t) / num_steps
            if binarize:
                x = ((x >= 0.5) | (x0 > 0.5)).to(x.dtype)
        t_vec = torch.full((x.size(0), ), (num_steps - 1) / num_steps,
                           dtype=x.dtype, device=x.device)
        return self(x, conditions, t_vec)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(dim={self.dim}, '
                f'num_conditions={self.num_conditions})')
