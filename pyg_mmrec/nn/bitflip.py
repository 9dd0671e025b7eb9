r"""The bit-flip (discrete) diffusion of GenRec-V1 on binary user-item rows,
usable by any model that denoises binary rows: a data-adaptive flip
schedule, the forward flip, the Bayesian reverse step and sampler, and the
denoising losses (focal or weighted BCE)."""
import math
from typing import Callable, Mapping, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

LOSSES = ('focal', 'bce')


class FlipSchedule(NamedTuple):
    r"""The per-step flip probabilities of one batch (float64, :obj:`[T]`):
    the schedule's :math:`\gamma_t, \epsilon_t`, their cumulative
    :math:`\Gamma_t, E_t`, and the probabilities :math:`\rho_t, \eta_t`
    with which :meth:`BitFlipDiffusion.q_sample` actually flips a 0 and a 1
    to step :math:`t` (after the temperature)."""
    gamma: Tensor
    epsilon: Tensor
    gamma_bar: Tensor
    epsilon_bar: Tensor
    flip0: Tensor
    flip1: Tensor


def soft_flip_probability(threshold: Tensor,
                          temperature: Optional[float]) -> Tensor:
    r"""The probability :math:`\mathbb{E}_{u \sim \mathcal{U}(0, 1)}\,
    \sigma(\tau (g - u))` that GenRec-V1's soft threshold flips a bit,

    .. math::
        f_\tau(g) = \frac{\mathrm{softplus}(\tau g) -
        \mathrm{softplus}(\tau (g - 1))}{\tau},

    and :math:`f_\infty(g) = g` (a hard threshold, :obj:`temperature=None`).
    """
    if temperature is None or math.isinf(temperature):
        return threshold.clamp(0.0, 1.0)
    tau = float(temperature)
    return (F.softplus(tau * threshold) -
            F.softplus(tau * (threshold - 1.0))) / tau


def _flip_matrix(flip0: Tensor, flip1: Tensor) -> Tensor:
    # [..., 2, 2] transition matrices [[1 - a, a], [b, 1 - b]].
    return torch.stack([torch.stack([1 - flip0, flip0], -1),
                        torch.stack([flip1, 1 - flip1], -1)], -2)


class BitFlipDiffusion(torch.nn.Module):
    r"""The bit-flip diffusion of GenRec-V1 (`"Flip is Better than Noise"
    <https://github.com/orangeheyue/GenRec-V1>`_, ACM MM'25) on binary rows
    :math:`\mathbf{x}_0 \in \{0, 1\}^{B \times I}`. It holds no learnable
    parameters.

    **Schedule** (data-adaptive, from each batch; :meth:`schedule`). With
    :math:`s` the fraction of zeros in the batch and :math:`T` steps,

    .. math::
        \gamma_t = \mathrm{lin}(0.1(1 - s) + 10^{-3},\ \tfrac{1}{10}\cdot)
        _t, \qquad
        \epsilon_t = \min(\mathrm{lin}(0.005 s + 10^{-4},\
        \tfrac{1}{10}\cdot)_t,\ 0.01),

    (linearly from the start value to a tenth of it over :math:`T` steps),
    :math:`\Gamma_t = 1 - \prod_{k \le t} (1 - \gamma_k)` (the cumulative
    0 :math:`\to` 1 threshold) and :math:`E_t = 1 - \prod_{k \le t}
    (1 - \epsilon_k)` (1 :math:`\to` 0).

    **Forward flip** (:meth:`q_sample`). The original flips a bit with
    probability :math:`\sigma(\tau (\Gamma_t - u))` (:math:`E_t` for a 1),
    :math:`u \sim \mathcal{U}(0, 1)`, :math:`\tau` = :obj:`flip_temperature`;
    marginally a bit flips with :math:`\rho_t = f_\tau(\Gamma_t)`
    (:math:`\eta_t = f_\tau(E_t)`, see :func:`soft_flip_probability`), which
    is drawn directly here (the same distribution, one random number per
    bit). Because :math:`\Gamma_t, E_t \approx 10^{-3}` and the threshold's
    width is :math:`1/\tau`, the fraction of flipped bits hardly depends on
    :math:`t` and is set by :math:`\tau`. On TikTok (:math:`s \approx
    0.999`), the flip rates at :math:`t = 0, \ldots, 4` are:

    ====================  ================  ================
    :math:`\tau`          0 :math:`\to` 1    1 :math:`\to` 0
    ====================  ================  ================
    1 (original)          38.01 - 38.06 %   38.11 - 38.31 %
    10                    6.99 - 7.08 %     7.19 - 7.65 %
    100                   0.75 - 0.86 %     0.98 - 1.62 %
    :obj:`None` (hard)    0.11 - 0.30 %     0.51 - 1.39 %
    ====================  ================  ================

    so at the original :math:`\tau = 1` almost all the noise comes in the
    first step (about 38 % of all bits, most of them 0 :math:`\to` 1), and
    steps :math:`1, \ldots, T - 1` add about 0.1 % each.

    **Reverse step** (:meth:`posterior`). With :math:`\bar{\mathbf{Q}}_t =
    \left(\begin{smallmatrix} 1 - \rho_t & \rho_t \\ \eta_t & 1 - \eta_t
    \end{smallmatrix}\right)` the marginal transition from :math:`x_0` to
    :math:`x_t` (:math:`\bar{\mathbf{Q}}_{-1} = \mathbf{I}`) and
    :math:`\mathbf{Q}_t = \bar{\mathbf{Q}}_{t-1}^{-1} \bar{\mathbf{Q}}_t` the
    one-step transition of the Markov chain with these marginals, the
    denoiser's :math:`p = P(x_0 = 1 \mid \mathbf{x}_t)` gives

    .. math::
        P(x_{t-1} = 1 \mid x_t) = \sum_{a \in \{0, 1\}} P(x_0 = a)\,
        \frac{[\bar{\mathbf{Q}}_{t-1}]_{a 1} [\mathbf{Q}_t]_{1 x_t}}
        {[\bar{\mathbf{Q}}_t]_{a x_t}}

    (Bayes' rule, at the step :math:`t` the chain is at). The original
    (:obj:`faithful=True`) instead draws :math:`x_{t-1} \sim
    \mathrm{Bernoulli}(p\,\bar\Gamma + (1 - p)(1 - \bar E))` with the
    stale :math:`\bar\Gamma = \Gamma_{T-1}, \bar E = E_{T-1}` of its last
    :meth:`q_sample` call for every step: its
    :math:`p_0 + p_1 = 1`, so this is the marginal of :math:`x` if
    :math:`p` were :math:`P(x_0 = 0)`; it ignores :math:`x_t`.

    **Sampler** (:meth:`p_sample`): flip :math:`\mathbf{x}_0` to step
    :obj:`steps - 1`, then for :math:`i = T - 1, \ldots, 0`: :math:`p =
    \sigma(\mathrm{denoiser}(\mathbf{x}, i))`, :math:`\mathbf{x} \sim` the
    reverse step for :math:`i > 0` and :math:`\mathrm{Bernoulli}(p)` at
    :math:`i = 0`; returns :math:`(\mathbf{x}, p)` of the last step.

    **Loss** (:meth:`loss`, see :func:`flip_denoising_loss`): the focal or
    weighted BCE loss of the logits at a random step against
    :math:`\mathbf{x}_0`.

    Args:
        num_steps (int, optional): :math:`T`. (default: :obj:`5`)
        flip_temperature (float, optional): :math:`\tau`; :obj:`None` is the
            hard threshold :math:`\tau \to \infty`. (default: :obj:`1.0`)
        loss (str, optional): :obj:`"focal"` or :obj:`"bce"`.
            (default: :obj:`"focal"`)
        focal_alpha (float, optional): :math:`\alpha`. (default:
            :obj:`0.25`)
        focal_gamma (float, optional): The focusing exponent. (default:
            :obj:`2.0`)
        faithful (bool, optional): The original's stale reverse step and
            its focal weight :math:`\alpha \cdot` :obj:`pos_weight`.
            (default: :obj:`False`)
    """
    def __init__(self, num_steps: int = 5,
                 flip_temperature: Optional[float] = 1.0,
                 loss: str = 'focal', focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0, faithful: bool = False):
        super().__init__()
        if num_steps < 1:
            raise ValueError(f"'num_steps' must be positive (got {num_steps})")
        if flip_temperature is not None and not flip_temperature > 0:
            raise ValueError(f"'flip_temperature' must be positive or None "
                             f"(got {flip_temperature})")
        _check_loss_args(loss, focal_alpha, focal_gamma)
        self.num_steps, self.flip_temperature = num_steps, flip_temperature
        self.loss_type, self.focal_alpha = loss, focal_alpha
        self.focal_gamma, self.faithful = focal_gamma, faithful

    def schedule(self, x0: Tensor) -> FlipSchedule:
        r"""The flip schedule of the batch :obj:`x0` :obj:`[B, I]`."""
        s = float((x0 == 0).sum()) / max(x0.numel(), 1)
        f64 = dict(dtype=torch.float64)
        g0, e0 = 0.1 * (1 - s) + 0.001, 0.005 * s + 0.0001
        gamma = torch.linspace(g0, 0.1 * g0, self.num_steps, **f64)
        eps = torch.linspace(e0, 0.1 * e0, self.num_steps, **f64).clamp(
            max=0.01)
        gamma_bar = 1 - torch.cumprod(1 - gamma, 0)
        eps_bar = 1 - torch.cumprod(1 - eps, 0)
        return FlipSchedule(
            gamma, eps, gamma_bar, eps_bar,
            soft_flip_probability(gamma_bar, self.flip_temperature),
            soft_flip_probability(eps_bar, self.flip_temperature))

    def sample_timesteps(self, batch_size: int, device=None,
                         generator: Optional[torch.Generator] = None
                         ) -> Tensor:
        r"""Draws steps :math:`t \sim \mathcal{U}\{0, \ldots, T - 1\}`."""
        return torch.randint(0, self.num_steps, (batch_size, ),
                             generator=generator, device=device)

    def q_sample(self, x0: Tensor, t: Tensor,
                 schedule: Optional[FlipSchedule] = None,
                 generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Flips the bits of :obj:`x0` :obj:`[B, I]` to the steps :obj:`t`
        :obj:`[B]` (a 0 with :math:`\rho_t`, a 1 with :math:`\eta_t`)."""
        if schedule is None:
            schedule = self.schedule(x0)
        t = t.reshape(-1).to(torch.long).cpu()
        rho = schedule.flip0[t].to(x0.device, x0.dtype).unsqueeze(1)
        eta = schedule.flip1[t].to(x0.device, x0.dtype).unsqueeze(1)
        prob = torch.where(x0 > 0, eta, rho)
        flip = torch.rand(x0.shape, generator=generator, device=x0.device,
                          dtype=x0.dtype) < prob
        return torch.where(flip, 1 - x0, x0)

    def posterior(self, p: Tensor, x: Tensor, step: int,
                  schedule: FlipSchedule) -> Tensor:
        r"""The probability that :math:`x_{t-1} = 1` given the state
        :obj:`x` :math:`= \mathbf{x}_t` at :obj:`step` :math:`t \ge 1` and
        the denoiser's :obj:`p` :math:`= P(x_0 = 1)` (see the class
        docstring; the original's stale formula with :obj:`faithful`)."""
        if not 1 <= step < self.num_steps:
            raise ValueError(f"'step' must be in [1, {self.num_steps - 1}] "
                             f"(got {step})")
        if self.faithful:
            g = float(schedule.gamma_bar[-1])
            e = float(schedule.epsilon_bar[-1])
            return p * g + (1 - p) * (1 - e)
        cum = _flip_matrix(schedule.flip0, schedule.flip1)
        prev, now = cum[step - 1], cum[step]
        one_step = torch.linalg.solve(prev, now)
        # post[a, b] = P(x_{t-1} = 1 | x_t = b, x_0 = a):
        post = (prev[:, 1:2] * one_step[1:2, :] / now).clamp(0.0, 1.0)
        post = post.to(p.device, p.dtype)
        ones = x > 0
        post1 = torch.where(ones, post[1, 1], post[1, 0])
        post0 = torch.where(ones, post[0, 1], post[0, 0])
        return p * post1 + (1 - p) * post0

    def p_sample(self, denoiser: Callable[[Tensor, Tensor], Tensor],
                 x0: Tensor, steps: Optional[int] = None, bayes: bool = True,
                 generator: Optional[torch.Generator] = None
                 ) -> Tuple[Tensor, Tensor]:
        r"""Runs the reverse chain from :obj:`x0` flipped to step
        :obj:`steps - 1` (:obj:`x0` itself for :obj:`steps=0`; default
        :math:`T`) with a logit-predicting :obj:`denoiser(x, t)`; without
        :obj:`bayes`, every step draws :math:`\mathrm{Bernoulli}(p)`.
        Returns the final state and the last step's :math:`p`."""
        steps = self.num_steps if steps is None else steps
        if not 0 <= steps <= self.num_steps:
            raise ValueError(f"'steps' must be in [0, {self.num_steps}] "
                             f"(got {steps})")
        schedule = self.schedule(x0)
        b = x0.size(0)
        x = x0
        if steps > 0:
            t = torch.full((b, ), steps - 1, dtype=torch.long)
            x = self.q_sample(x0, t, schedule, generator)
        for i in range(self.num_steps - 1, -1, -1):
            t = torch.full((b, ), i, dtype=torch.long, device=x0.device)
            p = torch.sigmoid(denoiser(x, t))
            prob = self.posterior(p, x, i, schedule) if bayes and i > 0 else p
            x = torch.bernoulli(prob, generator=generator)
        return x, p

    def loss(self, denoiser: Callable[[Tensor, Tensor], Tensor], x0: Tensor,
             generator: Optional[torch.Generator] = None) -> Tensor:
        r"""The denoising loss of :obj:`x0` :obj:`[B, I]` at random steps
        (one per row)."""
        t = self.sample_timesteps(x0.size(0), x0.device, generator)
        logits = denoiser(self.q_sample(x0, t, generator=generator), t)
        # The loss's [B, I] temporaries are recomputed in the backward pass
        # instead of kept (about ten of them: most of the stage's memory).
        return checkpoint(flip_denoising_loss, logits, x0, self.loss_type,
                          self.focal_alpha, self.focal_gamma, self.faithful,
                          use_reentrant=False)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_steps={self.num_steps}, '
                f'flip_temperature={self.flip_temperature}, '
                f"loss='{self.loss_type}', faithful={self.faithful})")


def _check_loss_args(loss: str, alpha: float, gamma: float) -> None:
    if loss not in LOSSES:
        raise ValueError(f"'loss' must be one of {LOSSES} (got '{loss}')")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"'focal_alpha' must be in [0, 1] (got {alpha})")
    if gamma < 0:
        raise ValueError(f"'focal_gamma' must be non-negative (got {gamma})")


def flip_denoising_loss(logits: Tensor, x0: Tensor, loss: str = 'focal',
                        alpha: float = 0.25, gamma: float = 2.0,
                        faithful: bool = False) -> Tensor:
    r"""The denoising loss of GenRec-V1's flip diffusion, a mean over all
    :math:`B \cdot I` entries, with :math:`p = \sigma(\ell)` and
    :math:`w = \#\{x_0 = 0\} / \#\{x_0 = 1\}` the batch's class ratio:

    * :obj:`"focal"`: :math:`-\alpha_a x_0 (1 - p)^{\gamma} \log p -
      (1 - \alpha_a)(1 - x_0) p^{\gamma} \log(1 - p)` with :math:`\alpha_a
      = \alpha \in [0, 1]`. The original (:obj:`faithful=True`) uses
      :math:`\alpha_a = \alpha w` (:math:`\approx 250` on TikTok) and
      :math:`p` clamped to :math:`[10^{-7}, 1 - 10^{-7}]`: the negative
      class's coefficient :math:`1 - \alpha_a` is then negative, and the
      loss *decreases* as :math:`p \to 1` on non-interactions.
    * :obj:`"bce"`: :math:`-w x_0 \log p - (1 - x_0) \log(1 - p)` (the
      original computes it and leaves it unused).

    Args:
        logits (torch.Tensor): :math:`\ell` :obj:`[B, I]`.
        x0 (torch.Tensor): Binary targets :obj:`[B, I]`.
        loss (str): :obj:`"focal"` or :obj:`"bce"`. (default:
            :obj:`"focal"`)
        alpha (float): :math:`\alpha`. (default: :obj:`0.25`)
        gamma (float): :math:`\gamma`. (default: :obj:`2.0`)
        faithful (bool): The original's :math:`\alpha_a = \alpha w`.
            (default: :obj:`False`)
    """
    _check_loss_args(loss, alpha, gamma)
    if logits.shape != x0.shape:
        raise ValueError(f"'logits' and 'x0' must have the same shape (got "
                         f"{tuple(logits.shape)} and {tuple(x0.shape)})")
    ones = x0.sum()
    weight = (x0.numel() - ones) / ones.clamp(min=1.0)
    if loss == 'bce':
        return F.binary_cross_entropy_with_logits(logits, x0,
                                                  pos_weight=weight)
    if faithful:
        p = torch.sigmoid(logits).clamp(1e-7, 1 - 1e-7)
        log_p, log_q = p.log(), (1 - p).log()
        alpha_a = alpha * weight
    else:  # stable logs: log sigma(l) and log(1 - sigma(l)) = log sigma(-l)
        p = torch.sigmoid(logits)
        log_p, log_q = F.logsigmoid(logits), F.logsigmoid(-logits)
        alpha_a = alpha
    pos = -alpha_a * (1 - p).pow(gamma) * log_p
    neg = -(1 - alpha_a) * p.pow(gamma) * log_q
    return torch.where(x0 > 0, pos, neg).mean()


def candidate_rows(x0: Tensor, x: Tensor, p: Tensor, k: int) -> Tensor:
    r"""GenRec-V1's generated rows: the sampled bits :obj:`x` at each row's
    top :obj:`k` items by the denoiser's :obj:`p`, the clean :obj:`x0`
    elsewhere (all :obj:`[B, I]`)."""
    cand = p.topk(k, dim=1).indices
    return x0.scatter(1, cand, x.gather(1, cand))


def top_generated(gen: Tensor, p: Tensor, k: int,
                  keep_empty: bool = False) -> Tensor:
    r"""Each row's top :obj:`k` items by :obj:`gen * p` (:obj:`[B, k]`);
    picks of score zero (a row with fewer than :obj:`k` ones in
    :obj:`gen`) are :obj:`-1` (no edge) unless :obj:`keep_empty`."""
    val, idx = (gen * p).topk(k, dim=1)
    return idx if keep_empty else idx.masked_fill(val <= 0, -1)


def interest_debias(x0: Tensor, gen: Tensor, labels: Mapping[str, Tensor],
                    sample_ratio: float = 0.1,
                    generator: Optional[torch.Generator] = None) -> Tensor:
    r"""GenRec-V1's InterestDebiase of generated rows :obj:`gen` against
    the clean rows :obj:`x0` (both :obj:`[B, I]`), with item clusters
    :obj:`labels[m]` :obj:`[I]` per modality. About :obj:`sample_ratio` of
    the 0 :math:`\to` 1 flips and of the 1 :math:`\to` 0 flips are drawn
    (each flip with that probability); with :math:`c_m(u, i)` the number of
    :math:`u`'s items in :math:`i`'s cluster of modality :math:`m` and
    :math:`c^{\min}_m(u)` the smallest such count over the clusters
    :math:`u` has items in:

    * a drawn 0 :math:`\to` 1 flip is kept if :math:`c_m(u, i) > 0` for
      every modality (the item matches the user's interests), else undone;
    * a drawn 1 :math:`\to` 0 flip (a removal) is kept if :math:`c_m(u, i)
      \le c^{\min}_m(u) + 1` for every modality (a rare interest), else
      undone.

    Each modality uses its own clusters (the original passes the image
    labels for every modality: pass :obj:`{m: labels['image']}` for that).
    Returns the debiased rows (a new tensor)."""
    if gen.shape != x0.shape:
        raise ValueError(f"'gen' and 'x0' must have the same shape (got "
                         f"{tuple(gen.shape)} and {tuple(x0.shape)})")
    if not 0.0 <= sample_ratio <= 1.0:
        raise ValueError(f"'sample_ratio' must be in [0, 1] "
                         f"(got {sample_ratio})")
    out = gen.clone()
    draw = torch.rand(x0.shape, generator=generator,
                      device=x0.device) < sample_ratio
    up = ((gen > 0) & (x0 <= 0) & draw).nonzero(as_tuple=True)
    down = ((gen <= 0) & (x0 > 0) & draw).nonzero(as_tuple=True)
    keep_up = torch.ones(up[0].numel(), dtype=torch.bool, device=x0.device)
    keep_down = torch.ones(down[0].numel(), dtype=torch.bool,
                           device=x0.device)
    for m, lab in labels.items():
        lab = lab.to(x0.device, torch.long)
        if lab.shape != (x0.size(1), ):
            raise ValueError(f"'labels[{m!r}]' must have shape "
                             f"[{x0.size(1)}] (got {tuple(lab.shape)})")
        counts = x0 @ F.one_hot(lab, int(lab.max()) + 1).to(x0.dtype)
        smallest = counts.masked_fill(counts <= 0, float('inf')).amin(1)
        keep_up &= counts[up[0], lab[up[1]]] > 0
        keep_down &= counts[down[0], lab[down[1]]] <= smallest[down[0]] + 1
    out[up[0][~keep_up], up[1][~keep_up]] = 0
    out[down[0][~keep_down], down[1][~keep_down]] = 1
    return out
