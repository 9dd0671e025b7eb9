r"""The sinusoidal time embedding shared by the diffusion denoiser (integer
steps) and the flow-matching generator (continuous times)."""
import math

import torch
from torch import Tensor


def sinusoidal_time_embedding(t: Tensor, dim: int,
                              frequency_scale: float = 1.0) -> Tensor:
    r"""Sinusoidal embedding of times or steps :math:`t`,

    .. math::
        \omega_k = s \exp\!\left(-\ln(10^4) \frac{k}{\max(\lfloor d/2
        \rfloor, 1)}\right), \quad k = 0, \ldots, \lfloor d/2 \rfloor - 1,
        \qquad
        \mathrm{emb}(t) = [\cos(t \boldsymbol{\omega}) \,\|\,
        \sin(t \boldsymbol{\omega})],

    with :math:`s` = :obj:`frequency_scale` and a zero column appended when
    :math:`d` is odd. Integer diffusion steps use :math:`s = 1`
    (:class:`~pyg_mmrec.nn.Denoiser`); continuous times
    :math:`t \in [0, 1]` use :math:`s = 2\pi`
    (:class:`~pyg_mmrec.nn.FlowMatchingGenerator`).

    Args:
        t (torch.Tensor): Times or steps :obj:`[N]` (a 0-dim tensor is one
            time). Integer tensors are embedded in :obj:`float32`, floating
            ones in their own dtype.
        dim (int): Embedding size :math:`d \ge 1`.
        frequency_scale (float, optional): The factor :math:`s` of all
            frequencies. (default: :obj:`1.0`)

    Returns:
        torch.Tensor: :obj:`[N, dim]`, cosines first, then sines, then the
        zero column if :obj:`dim` is odd.
    """
    if dim < 1:
        raise ValueError(f"'dim' must be a positive integer (got {dim})")
    t = t.reshape(-1)
    if not t.is_floating_point():
        t = t.float()
    half = dim // 2
    k = torch.arange(half, device=t.device, dtype=t.dtype)
    omega = frequency_scale * torch.exp(-math.log(1e4) * k / max(half, 1))
    arg = t.unsqueeze(-1) * omega
    out = torch.cat([arg.cos(), arg.sin()], dim=-1)
    if dim % 2 == 1:
        out = torch.cat([out, out.new_zeros(out.size(0), 1)], dim=-1)
    return out
