import math

import pytest
import torch

from pyg_mmrec.nn.diffusion import GaussianDiffusion


def hand_schedule(num_steps, noise_scale, noise_min, noise_max, beta_fixed):
    # Plain-Python (float64) schedule, written out step by step:
    if num_steps == 1:
        variances = [noise_scale * noise_min]
    else:
        step = (noise_max - noise_min) / (num_steps - 1)
        variances = [noise_scale * (noise_min + k * step)
                     for k in range(num_steps)]
    alpha_bar = [1.0 - v for v in variances]
    betas = [variances[0]]
    for k in range(1, num_steps):
        betas.append(min(1.0 - alpha_bar[k] / alpha_bar[k - 1], 0.999))
    if beta_fixed is not None:
        betas[0] = beta_fixed
    cumprod, prod = [], 1.0
    for b in betas:
        prod *= 1.0 - b
        cumprod.append(prod)
    prev = [1.0] + cumprod[:-1]
    coef1 = [betas[k] * math.sqrt(prev[k]) / (1.0 - cumprod[k])
             for k in range(num_steps)]
    coef2 = [(1.0 - prev[k]) * math.sqrt(1.0 - betas[k]) / (1.0 - cumprod[k])
             for k in range(num_steps)]
    post_var = [betas[k] * (1.0 - prev[k]) / (1.0 - cumprod[k])
                for k in range(num_steps)]
    return dict(betas=betas, alphas_cumprod=cumprod,
                alphas_cumprod_prev=prev, posterior_mean_coef1=coef1,
                posterior_mean_coef2=coef2, posterior_variance=post_var)


def assert_close(tensor, values, tol=1e-6):
    assert tensor.dtype == torch.float
    assert len(tensor) == len(values)
    for a, b in zip(tensor.tolist(), values):
        assert a == pytest.approx(b, abs=tol)


def test_default_schedule_by_hand():
    diff = GaussianDiffusion()  # T = 5, s = 0.1, 1e-4 .. 0.02, beta_0 = 1e-4
    assert diff.num_steps == 5
    # sigma^2_t = 0.1 * linspace(1e-4, 0.02, 5), step (0.02 - 1e-4) / 4:
    variances = [1e-5, 5.075e-4, 1.005e-3, 1.5025e-3, 2e-3]
    alpha_bar = [1 - 1e-5, 1 - 5.075e-4, 1 - 1.005e-3, 1 - 1.5025e-3,
                 1 - 2e-3]
    betas = [1e-4,  # fixed (the schedule would give 1e-5)
             1 - alpha_bar[1] / alpha_bar[0],
             1 - alpha_bar[2] / alpha_bar[1],
             1 - alpha_bar[3] / alpha_bar[2],
             1 - alpha_bar[4] / alpha_bar[3]]
    assert betas[1] == pytest.approx(4.97505e-4, abs=1e-9)
    assert betas[4] == pytest.approx(4.98249e-4, abs=1e-9)
    alphas = [1 - b for b in betas]
    ac = [alphas[0],
          alphas[0] * alphas[1],
          alphas[0] * alphas[1] * alphas[2],
          alphas[0] * alphas[1] * alphas[2] * alphas[3],
          alphas[0] * alphas[1] * alphas[2] * alphas[3] * alphas[4]]
    prev = [1.0, ac[0], ac[1], ac[2], ac[3]]
    coef1 = [betas[k] * math.sqrt(prev[k]) / (1 - ac[k]) for k in range(5)]
    coef2 = [(1 - prev[k]) * math.sqrt(alphas[k]) / (1 - ac[k])
             for k in range(5)]
    post_var = [betas[k] * (1 - prev[k]) / (1 - ac[k]) for k in range(5)]
    # Sanity of the hand values themselves:
    assert coef1[0] == pytest.approx(1.0) and coef2[0] == 0.0
    assert post_var[0] == 0.0
    assert coef1[1] == pytest.approx(0.8327, abs=1e-4)
    assert post_var[4] == pytest.approx(3.7965e-4, abs=1e-8)

    assert_close(diff.betas, betas)
    assert_close(diff.alphas_cumprod, ac)
    assert_close(diff.alphas_cumprod_prev, prev)
    assert_close(diff.posterior_mean_coef1, coef1)
    assert_close(diff.posterior_mean_coef2, coef2)
    assert_close(diff.posterior_variance, post_var, tol=1e-9)
    # The buffers follow the module but are not saved:
    assert diff.state_dict() == {}
    assert 'num_steps=5' in repr(diff) and 'beta_fixed=0.0001' in repr(diff)

    free = GaussianDiffusion(beta_fixed=None)
    assert free.betas[0].item() == pytest.approx(variances[0], abs=1e-10)
    assert_close(free.betas[1:], betas[1:])
    free_ac = [1 - variances[0]]
    for b in betas[1:]:
        free_ac.append(free_ac[-1] * (1 - b))
    # Without the overwrite, alpha_bar_t is exactly the target 1 - sigma^2_t:
    assert_close(free.alphas_cumprod, free_ac)
    assert_close(free.alphas_cumprod, alpha_bar)


@pytest.mark.parametrize('args', [(1, 0.1, 1e-4, 0.02, None),
                                  (1, 0.1, 1e-4, 0.02, 1e-4),
                                  (50, 1.0, 1e-3, 0.5, 1e-4),
                                  (10, 0.5, 5e-3, 0.9, None)])
def test_other_schedules(args):
    diff = GaussianDiffusion(*args)
    expected = hand_schedule(*args)
    for name, values in expected.items():
        assert_close(getattr(diff, name), values, tol=2e-6)


def test_sample_timesteps():
    diff = GaussianDiffusion(num_steps=7)
    gen = torch.Generator().manual_seed(0)
    t = diff.sample_timesteps(2000, generator=gen)
    assert t.shape == (2000, ) and t.dtype == torch.long
    assert set(t.tolist()) == set(range(7))
    counts = torch.bincount(t, minlength=7).float()
    assert torch.allclose(counts / 2000, torch.full((7, ), 1 / 7), atol=0.03)


def test_q_sample():
    diff = GaussianDiffusion()
    gen = torch.Generator().manual_seed(1)
    x0 = torch.bernoulli(torch.full((200, 500), 0.3), generator=gen)
    t0 = torch.zeros(200, dtype=torch.long)
    x_t = diff.q_sample(x0, t0, generator=gen)
    # sqrt(alpha_bar_0) = sqrt(1 - 1e-4), sqrt(1 - alpha_bar_0) = 0.01:
    assert (x_t - x0).abs().max() < 0.05
    assert not torch.equal(x_t, x0)

    t4 = torch.full((200, ), 4, dtype=torch.long)
    x_t = diff.q_sample(x0, t4, generator=gen)
    ac = 1.0
    for b in hand_schedule(5, 0.1, 1e-4, 0.02, 1e-4)['betas']:
        ac *= 1 - b
    noise_part = x_t - math.sqrt(ac) * x0
    assert noise_part.mean().abs() < 1e-3
    assert noise_part.std().item() == pytest.approx(math.sqrt(1 - ac),
                                                    rel=0.02)
    assert math.sqrt(1 - ac) == pytest.approx(0.0457146, abs=1e-6)

    # Rows with different steps, given noise:
    t = torch.tensor([0, 4, 2])
    x0, noise = torch.randn(3, 6, generator=gen), torch.randn(3, 6,
                                                              generator=gen)
    out = diff.q_sample(x0, t, noise=noise)
    ac = hand_schedule(5, 0.1, 1e-4, 0.02, 1e-4)['alphas_cumprod']
    for row, step in enumerate(t.tolist()):
        a = ac[step]
        expected = math.sqrt(a) * x0[row] + math.sqrt(1 - a) * noise[row]
        assert torch.allclose(out[row], expected, atol=1e-6)
    with pytest.raises(ValueError, match="'noise'"):
        diff.q_sample(x0, t, noise=noise[:, :2])


def test_snr_and_loss_weight():
    diff = GaussianDiffusion()
    ac = hand_schedule(5, 0.1, 1e-4, 0.02, 1e-4)['alphas_cumprod']
    snr = [a / (1 - a) for a in ac]
    t = torch.tensor([0, 1, 2, 3, 4, 0, 3])
    for got, step in zip(diff.snr(t).tolist(), t.tolist()):
        assert got == pytest.approx(snr[step], rel=1e-6)
    weight = diff.loss_weight(t)
    assert weight.shape == (7, )
    assert weight[0].item() == 1.0 and weight[5].item() == 1.0
    for row in (1, 2, 3, 4, 6):
        step = t[row].item()
        expected = snr[step - 1] - snr[step]
        assert expected > 0
        assert weight[row].item() == pytest.approx(expected, rel=1e-6)
    # The schedule is decreasing in SNR, so every weight is positive:
    assert (weight > 0).all()


def test_p_sample_identity_and_constant():
    for args in [(5, 0.1, 1e-4, 0.02, 1e-4), (8, 1.0, 1e-2, 0.6, None)]:
        diff = GaussianDiffusion(*args)
        sched = hand_schedule(*args)
        gen = torch.Generator().manual_seed(2)
        x_start = torch.randn(4, 9, generator=gen)

        factor = 1.0
        for c1, c2 in zip(sched['posterior_mean_coef1'],
                          sched['posterior_mean_coef2']):
            factor *= c1 + c2
        out = diff.p_sample(lambda x, t: x, x_start)
        assert torch.allclose(out, x_start * factor, atol=1e-5)
        if args[1] == 1.0:  # a large-noise schedule shrinks noticeably
            assert factor < 0.99

        seen = []

        def const(x, t, c=0.7):
            seen.append(t.clone())
            return torch.full_like(x, c)

        out = diff.p_sample(const, x_start)
        x = x_start.clone()
        for i in reversed(range(args[0])):
            x = (sched['posterior_mean_coef1'][i] * 0.7 +
                 sched['posterior_mean_coef2'][i] * x)
        assert torch.allclose(out, x, atol=1e-5)
        # The last step has coef1 = 1 (beta_0 > 0, alpha_bar_{-1} = 1) and
        # coef2 = 0, so the chain ends at the denoiser's output:
        assert torch.allclose(out, torch.full_like(out, 0.7), atol=1e-5)
        assert [s.tolist() for s in seen] == [[i] * 4 for i in
                                              reversed(range(args[0]))]
        assert all(s.dtype == torch.long for s in seen)


def test_p_sample_determinism_and_noise():
    diff = GaussianDiffusion()
    gen = torch.Generator().manual_seed(3)
    x_start = torch.bernoulli(torch.full((6, 20), 0.2), generator=gen)
    lin = torch.nn.Linear(20, 20)

    def denoiser(x, t):
        return lin(x) + 0.1 * t.float().unsqueeze(-1)

    with torch.no_grad():
        a = diff.p_sample(denoiser, x_start)
        b = diff.p_sample(denoiser, x_start)
        assert torch.equal(a, b)
        c = diff.p_sample(denoiser, x_start, sampling_noise=True,
                          generator=gen)
        assert not torch.equal(a, c)
        assert (a - c).abs().max() < 0.2  # the noise is small
        # Noised start (steps > 0) is random too:
        d = diff.p_sample(denoiser, x_start, steps=5, generator=gen)
        assert not torch.equal(a, d)
        # Seeded runs repeat:
        e1 = diff.p_sample(denoiser, x_start, steps=3, sampling_noise=True,
                           generator=torch.Generator().manual_seed(9))
        e2 = diff.p_sample(denoiser, x_start, steps=3, sampling_noise=True,
                           generator=torch.Generator().manual_seed(9))
        assert torch.equal(e1, e2)
    with pytest.raises(ValueError, match="'steps'"):
        diff.p_sample(denoiser, x_start, steps=6)
    with pytest.raises(ValueError, match="'steps'"):
        diff.p_sample(denoiser, x_start, steps=-1)
    with pytest.raises(ValueError, match="'denoiser'"):
        diff.p_sample(lambda x, t: x[:, :3], x_start)


def test_bad_arguments():
    with pytest.raises(ValueError, match="'num_steps'"):
        GaussianDiffusion(num_steps=0)
    with pytest.raises(ValueError, match="'noise_scale'"):
        GaussianDiffusion(noise_scale=0.0)
    with pytest.raises(ValueError, match="'noise_min'"):
        GaussianDiffusion(noise_min=0.0)
    with pytest.raises(ValueError, match="'noise_max'"):
        GaussianDiffusion(noise_min=0.1, noise_max=0.01)
    with pytest.raises(ValueError, match="'noise_scale' \\* 'noise_max'"):
        GaussianDiffusion(noise_scale=1.0, noise_max=1.0)
    with pytest.raises(ValueError, match="'beta_fixed'"):
        GaussianDiffusion(beta_fixed=1.0)
    with pytest.raises(ValueError, match="'beta_fixed'"):
        GaussianDiffusion(beta_fixed=0.0)
    # Equal levels with T > 1 give beta_t = 0:
    with pytest.raises(ValueError, match="'noise_max' must exceed"):
        GaussianDiffusion(noise_min=0.01, noise_max=0.01, beta_fixed=None)
    GaussianDiffusion(num_steps=1, noise_min=0.01, noise_max=0.01)  # fine
