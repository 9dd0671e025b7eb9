r"""Exact, memory-efficient InfoNCE losses whose softmax runs over *all* rows
of a view (all users or all items), as used by DiffMM and MDMNS.

A plain implementation materialises the :math:`N \times N` logit matrix and
its autograd copies. Here the logits are built in chunks of anchor rows, so
memory is :math:`O(\mathrm{chunk\_size} \cdot N)`, and the backward pass
recomputes each chunk instead of storing it: one matrix product in the
forward pass and, in the backward pass, the recomputation plus one product
per input that requires a gradient."""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable


class _ChunkedInfoNCE(torch.autograd.Function):
    r"""Mean cross-entropy of the logits :math:`\mathbf{a} \mathbf{b}^{\top}
    / \tau` against the columns :obj:`pos`, computed in chunks of rows of
    :math:`\mathbf{a}` without storing any logits.

    One :obj:`[chunk, N]` buffer in the compute dtype (and one in
    :obj:`matmul_dtype`, if set) is allocated per pass and reused by every
    chunk; all element-wise work on it is done in place. With
    :obj:`matmul_dtype`, the target is saved for the backward pass in that
    dtype only (both passes multiply by that copy), halving its memory.

    In :obj:`matmul_dtype`, the anchor rows of a product are padded with
    zero rows to a multiple of :obj:`ROWS_QUANTUM` (or to the chunk size):
    on CPU, oneDNN and ideep cache a primitive for every new shape of a
    low-precision product (up to 1,024 of them, about 0.5 MiB each), and a
    varying number of anchors (e.g. a batch's distinct users) would fill
    those caches."""
    ROWS_QUANTUM = 128

    @staticmethod
    def _padded(a_c: Tensor, low_buf: Tensor, inv_tau: float = 1.0
                ) -> Tensor:
        # (a_c * inv_tau) in the low dtype, with zero rows appended up to a
        # multiple of ROWS_QUANTUM, at most the buffer's rows.
        quantum = _ChunkedInfoNCE.ROWS_QUANTUM
        rows = min(-(-a_c.size(0) // quantum) * quantum, low_buf.size(0))
        out = a_c.new_zeros(rows, a_c.size(1), dtype=low_buf.dtype)
        torch.mul(a_c, inv_tau, out=out[:a_c.size(0)])
        return out

    @staticmethod
    def _logits(a_c: Tensor, b_t: Tensor, inv_tau: float, buf: Tensor,
                low_buf: Optional[Tensor]) -> Tensor:
        # Writes the logits (a_c / tau) @ b_t into the head of `buf`.
        out = buf[:a_c.size(0)]
        if low_buf is None:
            torch.mm(a_c * inv_tau, b_t, out=out)
        else:
            a_low = _ChunkedInfoNCE._padded(a_c, low_buf, inv_tau)
            low = low_buf[:a_low.size(0)]
            torch.mm(a_low, b_t, out=low)
            out.copy_(low[:a_c.size(0)])
        return out

    @staticmethod
    def _buffers(a: Tensor, b: Tensor, chunk_size: int,
                 matmul_dtype: Optional[torch.dtype]):
        rows = min(chunk_size, a.size(0))
        buf = a.new_empty(rows, b.size(0))
        if matmul_dtype is None or matmul_dtype == a.dtype:
            return b, buf, None
        quantum = _ChunkedInfoNCE.ROWS_QUANTUM
        rows = min(-(-rows // quantum) * quantum, chunk_size)
        low_buf = torch.empty(rows, b.size(0), dtype=matmul_dtype,
                              device=a.device)
        return b.to(matmul_dtype), buf, low_buf

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, pos: Tensor, inv_tau: float,
                chunk_size: int,
                matmul_dtype: Optional[torch.dtype]) -> Tensor:
        num_anchors = a.size(0)
        b_mm, buf, low_buf = _ChunkedInfoNCE._buffers(a, b, chunk_size,
                                                      matmul_dtype)
        lse = a.new_empty(num_anchors)
        total = a.new_zeros(())
        for start in range(0, num_anchors, chunk_size):
            end = min(start + chunk_size, num_anchors)
            logits = _ChunkedInfoNCE._logits(a[start:end], b_mm.t(), inv_tau,
                                             buf, low_buf)
            total -= logits.gather(1, pos[start:end].view(-1, 1)).sum()
            # Stable log-sum-exp, in place (the logits are not needed again):
            row_max = logits.amax(dim=1, keepdim=True)
            lse_c = logits.sub_(row_max).exp_().sum(dim=1).log_()
            lse_c += row_max.view(-1)
            lse[start:end] = lse_c
            total += lse_c.sum()
        ctx.save_for_backward(a, b_mm, pos, lse)
        ctx.inv_tau = inv_tau
        ctx.chunk_size = chunk_size
        ctx.matmul_dtype = matmul_dtype
        return total / num_anchors

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        a, b_mm, pos, lse = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_a = grad_b = None
        if not (need_a or need_b):
            return None, None, None, None, None, None
        inv_tau, chunk_size = ctx.inv_tau, ctx.chunk_size
        num_anchors = a.size(0)
        b_mm, buf, low_buf = _ChunkedInfoNCE._buffers(a, b_mm, chunk_size,
                                                      ctx.matmul_dtype)
        if need_a:
            grad_a = torch.empty_like(a)
        if need_b:
            grad_b = torch.zeros(b_mm.shape, dtype=a.dtype, device=a.device)
        # dL/dlogits = (P - onehot) / n, and logits = a b^T / tau:
        scale = grad_out * (inv_tau / num_anchors)
        for start in range(0, num_anchors, chunk_size):
            end = min(start + chunk_size, num_anchors)
            a_c = a[start:end]
            logits = _ChunkedInfoNCE._logits(a_c, b_mm.t(), inv_tau, buf,
                                             low_buf)
            # In place: logits -> softmax P -> (P - onehot) * scale.
            g = logits.sub_(lse[start:end].view(-1, 1)).exp_()
            rows = torch.arange(end - start, device=a.device)
            g[rows, pos[start:end]] -= 1
            g.mul_(scale)
            if low_buf is not None:  # padded with zero rows, as in _logits
                a_c = _ChunkedInfoNCE._padded(a_c, low_buf)
                g_low = low_buf[:a_c.size(0)]
                g_low[end - start:].zero_()
                g_low[:end - start].copy_(g)
                g = g_low
            if need_a:
                if low_buf is None:
                    torch.mm(g, b_mm, out=grad_a[start:end])
                else:
                    grad_a[start:end] = torch.mm(g, b_mm)[:end - start]
            if need_b:
                if low_buf is None:
                    grad_b.addmm_(g.t(), a_c)
                else:
                    grad_b += torch.mm(g.t(), a_c)
        return grad_a, grad_b, None, None, None, None


def _check_args(temperature: float, chunk_size: int,
                matmul_dtype: Optional[torch.dtype]):
    if not (temperature > 0) or not math.isfinite(temperature):
        raise ValueError(f"'temperature' must be a positive finite number "
                         f"(got {temperature})")
    if (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
            or chunk_size < 1):
        raise ValueError(f"'chunk_size' must be a positive integer "
                         f"(got {chunk_size})")
    if matmul_dtype is not None and not matmul_dtype.is_floating_point:
        raise ValueError(f"'matmul_dtype' must be a floating dtype "
                         f"(got {matmul_dtype})")


def _prepare_anchors(anchor: Tensor, index: Optional[Tensor],
                     name: str) -> Tuple[Tensor, Tensor]:
    # Validates the anchors (argument `name`) and the index, and returns the
    # normalised anchor rows and their positive columns.
    if anchor.dim() != 2:
        raise ValueError(f"'{name}' must be a 2-D tensor [N, d] (got shape "
                         f"{tuple(anchor.shape)})")
    if index is None:
        return (F.normalize(anchor, dim=-1),
                torch.arange(anchor.size(0), device=anchor.device))
    if index.dim() != 1 or index.dtype != torch.long:
        raise ValueError(f"'index' must be a 1-D LongTensor (got shape "
                         f"{tuple(index.shape)} and dtype {index.dtype})")
    if index.numel() == 0:
        raise ValueError("'index' must not be empty")
    index = index.to(anchor.device)
    # Row-wise normalisation commutes with the gather: normalise the anchor
    # rows only.
    return F.normalize(anchor.index_select(0, index), dim=-1), index


def info_nce(anchor: Tensor, target: Tensor, temperature: float = 0.5,
             index: Optional[Tensor] = None, chunk_size: int = 4096,
             matmul_dtype: Optional[torch.dtype] = None) -> Tensor:
    r"""The InfoNCE loss between two views of the same :math:`N` rows with
    cosine similarity, where the softmax of every anchor row runs over *all*
    :math:`N` rows of the target view,

    .. math::
        \mathcal{L} = \frac{1}{|\mathcal{B}|} \sum_{n \in \mathcal{B}}
        \left[ \log \sum_{j=1}^{N} \exp\!\left(
        \frac{\hat{\mathbf{a}}_n^{\top} \hat{\mathbf{b}}_j}{\tau}\right)
        - \frac{\hat{\mathbf{a}}_n^{\top} \hat{\mathbf{b}}_n}{\tau}
        \right], \qquad
        \hat{\mathbf{a}}_n = \frac{\mathbf{a}_n}{\lVert \mathbf{a}_n
        \rVert}, \quad
        \hat{\mathbf{b}}_j = \frac{\mathbf{b}_j}{\lVert \mathbf{b}_j
        \rVert},

    where the anchors :math:`\mathcal{B}` are the rows in :obj:`index`
    (a multiset: duplicates count repeatedly) or all :math:`N` rows. This is
    :obj:`F.cross_entropy(a[index] @ b.T / tau, index)` with
    :obj:`a, b = F.normalize(anchor), F.normalize(target)`, computed exactly
    but without the :math:`|\mathcal{B}| \times N` logit matrix: the logits
    are built for :obj:`chunk_size` anchor rows at a time, in the forward
    pass and again in the backward pass, so memory is
    :math:`O(\mathrm{chunk\_size} \cdot N)` and the cost is one
    :math:`|\mathcal{B}| \times N \times d` matrix product forward and, in
    the backward pass, the recomputation plus one product per input that
    requires a gradient (pass :obj:`target.detach()` for a stop-gradient
    target).

    With :obj:`index` set to a batch of user (item) ids this is DiffMM's
    cross-view contrast (:obj:`cl_method = 0`), anchors
    :math:`\mathbf{x}_{\mathcal{B}}` against all rows of
    :math:`\mathbf{y}`, positives :math:`\mathbf{y}_{\mathcal{B}}`:
    :obj:`info_nce(x, y, temperature, index=batch)`. (The original adds
    :math:`10^{-8}` to the softmax denominator, which changes the loss by
    less than :math:`10^{-8} e^{1/\tau} / N`.) With
    :obj:`target = (x + noise).detach()` it is one term of MDMNS's
    noisy-view loss, see :func:`noisy_view_info_nce`.

    Args:
        anchor (torch.Tensor): The anchor view :math:`\mathbf{a}`
            :obj:`[N, d]`.
        target (torch.Tensor): The target view :math:`\mathbf{b}`
            :obj:`[N, d]`; row :math:`n` is the positive of anchor row
            :math:`n`.
        temperature (float, optional): The temperature :math:`\tau > 0`.
            (default: :obj:`0.5`)
        index (torch.Tensor, optional): The anchor rows :math:`\mathcal{B}`
            as a 1-D LongTensor (duplicates allowed); :obj:`None` uses all
            rows. (default: :obj:`None`)
        chunk_size (int, optional): Anchor rows per chunk of logits.
            (default: :obj:`4096`)
        matmul_dtype (torch.dtype, optional): If set (e.g.
            :obj:`torch.bfloat16`), the chunk matrix products of both
            passes run in this dtype (their outputs, i.e. the logits and
            the per-chunk gradient products, are rounded to it), while the
            log-sum-exp, the loss and the gradients are accumulated in the
            input dtype. About twice as fast on CPUs with
            :obj:`avx512_bf16`; the loss is then accurate to about
            :math:`10^{-4}` relative and the gradients to about
            :math:`5 \cdot 10^{-3}` (relative norm). :obj:`None` uses the
            input dtype. (default: :obj:`None`)

    Returns:
        torch.Tensor: The scalar loss, in the inputs' (promoted) dtype, at
        least :obj:`torch.float32`.
    """
    _check_args(temperature, chunk_size, matmul_dtype)
    if target.dim() != 2 or target.shape != anchor.shape:
        raise ValueError(f"'anchor' and 'target' must be 2-D tensors of the "
                         f"same shape (got {tuple(anchor.shape)} and "
                         f"{tuple(target.shape)})")
    for name, t in (('anchor', anchor), ('target', target)):
        if not t.is_floating_point():
            raise ValueError(f"'{name}' must be a floating tensor "
                             f"(got {t.dtype})")
    dtype = torch.promote_types(anchor.dtype, target.dtype)
    dtype = torch.promote_types(dtype, torch.float32)
    a_sel, pos = _prepare_anchors(anchor.to(dtype), index, 'anchor')
    b = F.normalize(target.to(dtype), dim=-1)
    return _ChunkedInfoNCE.apply(a_sel, b, pos, 1.0 / temperature,
                                 chunk_size, matmul_dtype)


def mdmns_noise_levels(num_steps: int) -> List[int]:
    r"""The noise levels of MDMNS's multi-level noisy views for :math:`T`
    diffusion steps,

    .. math::
        \left[\lfloor T/10 \rfloor, \lfloor T/8 \rfloor,
        \lfloor T/4 \rfloor, \lfloor T/2 \rfloor\right]

    (the original's :obj:`int(T / 10)`, ...); e.g. :obj:`[0, 0, 1, 2]` for
    :math:`T = 5` and :obj:`[2, 2, 5, 10]` for :math:`T = 20`.

    Args:
        num_steps (int): The number of diffusion steps :math:`T \geq 1`.
    """
    if (isinstance(num_steps, bool) or not isinstance(num_steps, int)
            or num_steps < 1):
        raise ValueError(f"'num_steps' must be a positive integer "
                         f"(got {num_steps})")
    return [num_steps // k for k in (10, 8, 4, 2)]


def noisy_view_info_nce(x: Tensor, noise_levels: Sequence[float],
                        temperature: float = 0.5,
                        index: Optional[Tensor] = None,
                        chunk_size: int = 4096,
                        generator: Optional[torch.Generator] = None,
                        matmul_dtype: Optional[torch.dtype] = None
                        ) -> Tensor:
    r"""The multi-level noisy-view contrastive loss of MDMNS: every noise
    level :math:`s` perturbs the embeddings with Gaussian noise into a
    stop-gradient target view and contrasts the clean embeddings with it by
    :func:`info_nce`,

    .. math::
        \mathcal{L} = \sum_{s \in \mathcal{S}}
        \mathrm{InfoNCE}\!\left(\mathbf{X},\,
        \mathrm{sg}(\mathbf{X} + s\,\boldsymbol{\epsilon}_s)\right),
        \qquad \boldsymbol{\epsilon}_s \sim \mathcal{N}(\mathbf{0},
        \mathbf{I}),

    with a fresh draw :math:`\boldsymbol{\epsilon}_s` for every entry of
    :math:`\mathcal{S}` (a repeated level :math:`s > 0` gives different
    views). MDMNS uses :math:`\mathcal{S} =` :func:`mdmns_noise_levels`
    :obj:`(T)`, i.e. :math:`\lfloor T/10 \rfloor, \lfloor T/8 \rfloor,
    \lfloor T/4 \rfloor, \lfloor T/2 \rfloor` for :math:`T` diffusion steps
    (:obj:`[0, 0, 1, 2]` for :math:`T = 5`).

    A level :math:`s = 0` draws no noise (its target is
    :obj:`x.detach()`), and its :math:`m` repetitions are computed once and
    counted :math:`m` times. Noise is drawn for the levels :math:`s > 0` in
    the order given, so the result equals the naive loop over the levels
    with the same generator state (up to the order of summation). The
    anchors are normalised once for all levels.

    Args:
        x (torch.Tensor): The embeddings :math:`\mathbf{X}` :obj:`[N, d]`.
        noise_levels (Sequence[float]): The noise scales
            :math:`\mathcal{S}` (non-negative, at least one).
        temperature (float, optional): The temperature :math:`\tau > 0`.
            (default: :obj:`0.5`)
        index (torch.Tensor, optional): The anchor rows, see
            :func:`info_nce`. (default: :obj:`None`)
        chunk_size (int, optional): Anchor rows per chunk of logits.
            (default: :obj:`4096`)
        generator (torch.Generator, optional): Random generator on
            :obj:`x`'s device for the noise. (default: :obj:`None`)
        matmul_dtype (torch.dtype, optional): Dtype of the chunk matrix
            products, see :func:`info_nce`. (default: :obj:`None`)

    Returns:
        torch.Tensor: The scalar loss, summed over the levels.
    """
    _check_args(temperature, chunk_size, matmul_dtype)
    levels = [float(s) for s in noise_levels]
    if len(levels) == 0:
        raise ValueError("'noise_levels' must not be empty")
    for s in levels:
        if not (s >= 0) or not math.isfinite(s):
            raise ValueError(f"'noise_levels' must be non-negative finite "
                             f"numbers (got {list(noise_levels)})")
    if not x.is_floating_point():
        raise ValueError(f"'x' must be a floating tensor (got {x.dtype})")
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    a_sel, pos = _prepare_anchors(x, index, 'x')
    x_detached = x.detach()
    inv_tau = 1.0 / temperature

    def contrast(target: Tensor) -> Tensor:
        b = F.normalize(target, dim=-1)
        return _ChunkedInfoNCE.apply(a_sel, b, pos, inv_tau, chunk_size,
                                     matmul_dtype)

    num_zero = sum(1 for s in levels if s == 0)
    loss = contrast(x_detached) * num_zero if num_zero > 0 else None
    for s in levels:
        if s == 0:
            continue
        noise = torch.randn(x.shape, generator=generator, device=x.device,
                            dtype=x.dtype)
        term = contrast(x_detached + s * noise)
        loss = term if loss is None else loss + term
    return loss
