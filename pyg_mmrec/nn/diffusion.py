r"""The Gaussian diffusion of DiffMM and MDMNS (a short linear-variance
schedule whose first :math:`\beta` is fixed), usable by any model that
denoises user interaction rows (or any other rows of real values)."""
import math
from typing import Callable, Optional

import torch
from torch import Tensor


class GaussianDiffusion(torch.nn.Module):
    r"""The Gaussian diffusion process of DiffMM ("DiffMM: Multi-Modal
    Diffusion Model for Recommendation") and MDMNS, with the variance
    schedule of DiffRec. It holds no learnable parameters: it noises rows
    (:meth:`q_sample`), weights the per-step losses (:meth:`loss_weight`)
    and runs the reverse chain with a caller-given denoiser
    (:meth:`p_sample`).

    With :math:`T` = :obj:`num_steps`, the target noise levels are linear
    in :math:`t`,

    .. math::
        \sigma^2_t = s \cdot \left(\sigma^2_{\min} + \frac{t}{T - 1}
        (\sigma^2_{\max} - \sigma^2_{\min})\right), \qquad
        \tilde{\alpha}_t = 1 - \sigma^2_t, \qquad t = 0, \ldots, T - 1,

    and the per-step noise follows from them,

    .. math::
        \beta_0 = \sigma^2_0, \qquad
        \beta_t = \min\!\left(1 - \frac{\tilde{\alpha}_t}
        {\tilde{\alpha}_{t-1}}, 0.999\right) \quad (t \ge 1).

    If :obj:`beta_fixed` is given, :math:`\beta_0` is then overwritten by it
    (as DiffMM does with :math:`10^{-4}`); everything below is computed from
    the final :math:`\beta`,

    .. math::
        \alpha_t = 1 - \beta_t, \qquad
        \bar{\alpha}_t = \prod_{s=0}^{t} \alpha_s, \qquad
        \bar{\alpha}_{-1} = 1,

    .. math::
        \mu_t(\mathbf{x}_t, \hat{\mathbf{x}}_0) =
        \underbrace{\frac{\beta_t \sqrt{\bar{\alpha}_{t-1}}}
        {1 - \bar{\alpha}_t}}_{c^{(1)}_t} \hat{\mathbf{x}}_0 +
        \underbrace{\frac{(1 - \bar{\alpha}_{t-1}) \sqrt{\alpha_t}}
        {1 - \bar{\alpha}_t}}_{c^{(2)}_t} \mathbf{x}_t, \qquad
        \tilde{\beta}_t = \frac{\beta_t (1 - \bar{\alpha}_{t-1})}
        {1 - \bar{\alpha}_t}.

    The schedule is computed in float64 and stored as float32 buffers
    (:obj:`betas`, :obj:`alphas_cumprod`, :obj:`alphas_cumprod_prev`,
    :obj:`posterior_mean_coef1`, :obj:`posterior_mean_coef2`,
    :obj:`posterior_variance`, and, for precision near
    :math:`\bar{\alpha}_t \approx 1`, :obj:`sqrt_alphas_cumprod`,
    :obj:`sqrt_one_minus_alphas_cumprod`, :obj:`snr_values` and
    :obj:`loss_weights`); they are not part of the
    :obj:`state_dict` and follow the module's device.

    Args:
        num_steps (int, optional): Number of diffusion steps :math:`T`.
            (default: :obj:`5`)
        noise_scale (float, optional): Scale :math:`s` of the noise levels.
            (default: :obj:`0.1`)
        noise_min (float, optional): Lowest level :math:`\sigma^2_{\min}`.
            (default: :obj:`1e-4`)
        noise_max (float, optional): Highest level :math:`\sigma^2_{\max}`.
            (default: :obj:`0.02`)
        beta_fixed (float, optional): If set, the value of :math:`\beta_0`;
            :obj:`None` keeps :math:`\beta_0 = \sigma^2_0`.
            (default: :obj:`1e-4`)
    """
    def __init__(self, num_steps: int = 5, noise_scale: float = 0.1,
                 noise_min: float = 1e-4, noise_max: float = 0.02,
                 beta_fixed: Optional[float] = 1e-4):
        super().__init__()
        if num_steps < 1:
            raise ValueError(f"'num_steps' must be positive "
                             f"(got {num_steps})")
        if noise_scale <= 0:
            raise ValueError(f"'noise_scale' must be positive "
                             f"(got {noise_scale})")
        if noise_min <= 0:
            raise ValueError(f"'noise_min' must be positive "
                             f"(got {noise_min})")
        if noise_max < noise_min:
            raise ValueError(f"'noise_max' must be at least 'noise_min' "
                             f"(got noise_max={noise_max}, "
                             f"noise_min={noise_min})")
        if noise_scale * noise_max >= 1:
            raise ValueError(f"'noise_scale' * 'noise_max' must be below 1 "
                             f"(got {noise_scale} * {noise_max})")
        if beta_fixed is not None and not 0 < beta_fixed < 1:
            raise ValueError(f"'beta_fixed' must be in (0, 1) or None "
                             f"(got {beta_fixed})")
        self.num_steps = num_steps
        self.noise_scale = noise_scale
        self.noise_min = noise_min
        self.noise_max = noise_max
        self.beta_fixed = beta_fixed

        f64 = torch.float64
        variance = noise_scale * torch.linspace(noise_min, noise_max,
                                                num_steps, dtype=f64)
        alpha_bar = 1.0 - variance
        betas = torch.empty(num_steps, dtype=f64)
        betas[0] = variance[0]
        if num_steps > 1:
            betas[1:] = (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(
                max=0.999)
        if beta_fixed is not None:
            betas[0] = beta_fixed
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError(f"the schedule must give betas in (0, 1) (got "
                             f"{betas.tolist()}); with 'num_steps' > 1, "
                             f"'noise_max' must exceed 'noise_min'")
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.cat(
            [alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        denom = 1.0 - alphas_cumprod
        coef1 = betas * alphas_cumprod_prev.sqrt() / denom
        coef2 = (1.0 - alphas_cumprod_prev) * alphas.sqrt() / denom
        post_var = betas * (1.0 - alphas_cumprod_prev) / denom
        # Quantities with 1 - alpha_bar (tiny for small t) are computed here
        # in float64, not later from the rounded float32 alpha_bar:
        snr = alphas_cumprod / denom
        weights = torch.ones_like(snr)
        weights[1:] = snr[:-1] - snr[1:]

        for name, value in (('betas', betas),
                            ('alphas_cumprod', alphas_cumprod),
                            ('alphas_cumprod_prev', alphas_cumprod_prev),
                            ('sqrt_alphas_cumprod', alphas_cumprod.sqrt()),
                            ('sqrt_one_minus_alphas_cumprod', denom.sqrt()),
                            ('snr_values', snr),
                            ('loss_weights', weights),
                            ('posterior_mean_coef1', coef1),
                            ('posterior_mean_coef2', coef2),
                            ('posterior_variance', post_var)):
            self.register_buffer(name, value.float(), persistent=False)

    def _gather(self, buf: Tensor, t: Tensor, like: Tensor) -> Tensor:
        # buf[t] reshaped to [B, 1, ..., 1] to broadcast against `like`:
        out = buf.to(like.dtype if like.is_floating_point() else buf.dtype)
        out = out[t.to(buf.device).long().reshape(-1)]
        return out.to(like.device).reshape(-1, *([1] * (like.dim() - 1)))

    def sample_timesteps(self, batch_size: int,
                         device: Optional[torch.device] = None,
                         generator: Optional[torch.Generator] = None
                         ) -> Tensor:
        r"""Draws steps :math:`t \sim \mathcal{U}\{0, \ldots, T - 1\}`.

        Args:
            batch_size (int): Number of steps to draw.
            device (torch.device, optional): Their device; :obj:`None` is the
                module's device. (default: :obj:`None`)
            generator (torch.Generator, optional): Random generator on that
                device. (default: :obj:`None`)

        Returns:
            torch.Tensor: A :obj:`long` tensor :obj:`[batch_size]`.
        """
        if device is None:
            device = self.betas.device
        return torch.randint(0, self.num_steps, (batch_size, ),
                             generator=generator, device=device)

    def q_sample(self, x_start: Tensor, t: Tensor,
                 noise: Optional[Tensor] = None,
                 generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Noises rows to step :math:`t` (the forward process),

        .. math::
            \mathbf{x}_t = \sqrt{\bar{\alpha}_t} \, \mathbf{x}_0 +
            \sqrt{1 - \bar{\alpha}_t} \, \boldsymbol{\epsilon}, \qquad
            \boldsymbol{\epsilon} \sim \mathcal{N}(\mathbf{0}, \mathbf{I}).

        Args:
            x_start (torch.Tensor): Clean rows :math:`\mathbf{x}_0`
                :obj:`[B, ...]`.
            t (torch.Tensor): One step per row :obj:`[B]`.
            noise (torch.Tensor, optional): The noise
                :math:`\boldsymbol{\epsilon}` (shape of :obj:`x_start`);
                drawn if :obj:`None`. (default: :obj:`None`)
            generator (torch.Generator, optional): Random generator for the
                noise. (default: :obj:`None`)

        Returns:
            torch.Tensor: :math:`\mathbf{x}_t`, shaped like :obj:`x_start`.
        """
        a = self._gather(self.sqrt_alphas_cumprod, t, x_start)
        b = self._gather(self.sqrt_one_minus_alphas_cumprod, t, x_start)
        if noise is None:  # drawn here: scaled in place, no temporaries
            noise = torch.randn(x_start.shape, generator=generator,
                                device=x_start.device, dtype=x_start.dtype)
            return noise.mul_(b).addcmul_(a, x_start)
        if noise.shape != x_start.shape:
            raise ValueError(f"'noise' must have the shape of 'x_start' "
                             f"{tuple(x_start.shape)} (got "
                             f"{tuple(noise.shape)})")
        return a * x_start + b * noise

    def snr(self, t: Tensor) -> Tensor:
        r"""The signal-to-noise ratio
        :math:`\mathrm{SNR}(t) = \bar{\alpha}_t / (1 - \bar{\alpha}_t)`.

        Args:
            t (torch.Tensor): Steps :obj:`[B]`.

        Returns:
            torch.Tensor: :obj:`[B]` (float32, on :obj:`t`'s device).
        """
        return self.snr_values[t.to(self.betas.device).long()].to(t.device)

    def loss_weight(self, t: Tensor) -> Tensor:
        r"""The per-row weight of the reconstruction loss at step :math:`t`
        (the ELBO weight of x-prediction, as in DiffRec and DiffMM),

        .. math::
            w_t = \begin{cases} 1 & t = 0 \\
            \mathrm{SNR}(t - 1) - \mathrm{SNR}(t) & t > 0 \end{cases}.

        The weights are computed in float64 when the schedule is built. For
        the short, low-noise default schedule they are large (about
        :math:`8.3 \cdot 10^3` at :math:`t = 1` and :math:`1.5 \cdot 10^2`
        at :math:`t = 4`) next to :math:`w_0 = 1`; this is the weighting of
        the original.

        Args:
            t (torch.Tensor): Steps :obj:`[B]`.

        Returns:
            torch.Tensor: :obj:`[B]` (float32, on :obj:`t`'s device).
        """
        return self.loss_weights[t.to(self.betas.device).long()].to(
            t.device)

    def p_sample(self, denoiser: Callable[[Tensor, Tensor], Tensor],
                 x_start: Tensor, steps: int = 0,
                 sampling_noise: bool = False,
                 generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Runs the reverse chain with an x-predicting denoiser
        (as DiffMM's :obj:`p_sample`):

        1. :math:`\mathbf{x} \leftarrow \mathbf{x}_0` if :obj:`steps` is
           :obj:`0`, else :math:`\mathbf{x} \leftarrow` :meth:`q_sample`
           :math:`(\mathbf{x}_0, \mathtt{steps} - 1)`.
        2. For :math:`i = T - 1, \ldots, 0` (always the full chain):

           .. math::
               \boldsymbol{\mu} = c^{(1)}_i \,
               \mathrm{denoiser}(\mathbf{x}, i) + c^{(2)}_i \, \mathbf{x},
               \qquad
               \mathbf{x} \leftarrow \boldsymbol{\mu} +
               \mathbb{1}[\mathtt{sampling\_noise} \land i > 0]
               \sqrt{\tilde{\beta}_i} \, \boldsymbol{\epsilon}.

        With :obj:`steps=0` and :obj:`sampling_noise=False` (the DiffMM
        defaults) no random number is drawn and the chain is deterministic
        for a deterministic denoiser.

        The denoiser is called in whatever mode (train/eval) and gradient
        mode the caller set; this method changes neither. Wrap the call in
        :obj:`torch.no_grad()` for inference.

        Args:
            denoiser (callable): Any callable :obj:`(x [B, ...], t [B]) ->`
                a tensor shaped like :obj:`x` (the predicted
                :math:`\hat{\mathbf{x}}_0`), e.g. a
                :class:`~pyg_mmrec.nn.Denoiser`. It gets :obj:`t` as a
                :obj:`long` tensor on :obj:`x`'s device.
            x_start (torch.Tensor): Start rows :obj:`[B, ...]` (e.g. the
                users' interaction rows).
            steps (int, optional): Noise the start to step
                :obj:`steps - 1` first (:math:`0 \le` :obj:`steps`
                :math:`\le T`). (default: :obj:`0`)
            sampling_noise (bool, optional): Add posterior noise in every
                step but the last. (default: :obj:`False`)
            generator (torch.Generator, optional): Random generator for all
                noise. (default: :obj:`None`)

        Returns:
            torch.Tensor: The final state, shaped like :obj:`x_start`.
        """
        if not 0 <= steps <= self.num_steps:
            raise ValueError(f"'steps' must be in [0, {self.num_steps}] "
                             f"(got {steps})")
        batch_size = x_start.size(0)
        device = x_start.device
        if steps == 0:
            x = x_start
        else:
            t = torch.full((batch_size, ), steps - 1, dtype=torch.long,
                           device=device)
            x = self.q_sample(x_start, t, generator=generator)
        coef1 = self.posterior_mean_coef1.tolist()
        coef2 = self.posterior_mean_coef2.tolist()
        post_var = self.posterior_variance.tolist()
        for i in range(self.num_steps - 1, -1, -1):
            t = torch.full((batch_size, ), i, dtype=torch.long,
                           device=device)
            out = denoiser(x, t)
            if out.shape != x.shape:
                raise ValueError(f"'denoiser' must return the shape of its "
                                 f"input {tuple(x.shape)} (got "
                                 f"{tuple(out.shape)})")
            mean = coef1[i] * out + coef2[i] * x
            if sampling_noise and i > 0:
                noise = torch.randn(x.shape, generator=generator,
                                    device=device, dtype=mean.dtype)
                x = mean + math.sqrt(post_var[i]) * noise
            else:
                x = mean
        return x

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_steps={self.num_steps}, '
                f'noise_scale={self.noise_scale}, '
                f'noise_min={self.noise_min}, noise_max={self.noise_max}, '
                f'beta_fixed={self.beta_fixed})')
