import math

import pytest
import torch

from pyg_mmrec.nn import (
    BitFlipDiffusion,
    flip_denoising_loss,
    interest_debias,
    soft_flip_probability,
)


def rows(density=0.05, shape=(64, 200), seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < density).float()


def test_schedule_matches_hand_computation():
    x0 = torch.zeros(4, 250)
    x0[0, :10] = 1  # 10 ones in 1000 entries: s = 0.99
    sched = BitFlipDiffusion(num_steps=3).schedule(x0)
    s = 0.99
    g0, e0 = 0.1 * (1 - s) + 0.001, 0.005 * s + 0.0001
    gamma = [g0, (g0 + 0.1 * g0) / 2, 0.1 * g0]
    eps = [e0, (e0 + 0.1 * e0) / 2, 0.1 * e0]
    gbar = [1 - math.prod(1 - g for g in gamma[:t + 1]) for t in range(3)]
    ebar = [1 - math.prod(1 - e for e in eps[:t + 1]) for t in range(3)]
    assert sched.gamma.tolist() == pytest.approx(gamma, rel=1e-12)
    assert sched.epsilon.tolist() == pytest.approx(eps, rel=1e-12)
    assert sched.gamma_bar.tolist() == pytest.approx(gbar, rel=1e-12)
    assert sched.epsilon_bar.tolist() == pytest.approx(ebar, rel=1e-12)
    # gbar[0] = 0.002, ebar[2] = 0.005049 + ...: by hand
    assert gbar[0] == pytest.approx(0.002)
    # epsilon is clamped at 0.01 for an all-zero batch: e0 = 0.0051 < 0.01
    assert float(BitFlipDiffusion().schedule(torch.zeros(2, 5)).epsilon.max()
                 ) == pytest.approx(0.0051)


def test_soft_flip_probability_is_the_mean_of_the_soft_threshold():
    g = torch.tensor([0.0, 0.003, 0.3], dtype=torch.float64)
    u = torch.linspace(0, 1, 200001, dtype=torch.float64)
    for tau in (1.0, 10.0):
        mean = torch.sigmoid(tau * (g[:, None] - u)).mean(1)
        torch.testing.assert_close(soft_flip_probability(g, tau), mean,
                                   atol=1e-5, rtol=0)
    # the original's temperature flips ~38 % of the bits; hard: g itself
    assert 0.37 < float(soft_flip_probability(g[:1], 1.0)) < 0.39
    torch.testing.assert_close(soft_flip_probability(g, None), g)


@pytest.mark.parametrize('tau', [1.0, 10.0, None])
def test_forward_flip_rate_matches_its_probabilities(tau):
    process = BitFlipDiffusion(flip_temperature=tau)
    x0 = rows(0.3, (400, 500))
    sched = process.schedule(x0)
    for step in (0, 4):
        t = torch.full((400, ), step)
        xt = process.q_sample(x0, t, sched,
                              torch.Generator().manual_seed(100 + step))
        assert set(xt.unique().tolist()) <= {0.0, 1.0}
        flipped = xt != x0
        rate0 = flipped[x0 == 0].float().mean()
        rate1 = flipped[x0 == 1].float().mean()
        n0, n1 = int((x0 == 0).sum()), int((x0 == 1).sum())
        for rate, p, n in ((rate0, sched.flip0[step], n0),
                           (rate1, sched.flip1[step], n1)):
            sd = math.sqrt(float(p) * (1 - float(p)) / n)
            assert abs(float(rate) - float(p)) < 5 * sd + 1e-6


def bayes_reference(p, x, step, sched):
    # P(x_{t-1} = 1 | x_t, x0) from the marginals q(x_t | x0) by Bayes' rule
    # over the Markov chain whose cumulative transitions they are.
    def cum(t):
        if t < 0:
            return torch.eye(2, dtype=torch.float64)
        a, b = float(sched.flip0[t]), float(sched.flip1[t])
        return torch.tensor([[1 - a, a], [b, 1 - b]], dtype=torch.float64)
    one_step = torch.linalg.inv(cum(step - 1)) @ cum(step)
    out = torch.empty_like(p, dtype=torch.float64)
    for idx in range(p.numel()):
        xt = int(x.view(-1)[idx])
        total = 0.0
        for x0, prior in ((1, float(p.view(-1)[idx])),
                          (0, 1 - float(p.view(-1)[idx]))):
            joint = [cum(step - 1)[x0, c] * one_step[c, xt] for c in (0, 1)]
            total += prior * float(joint[1] / (joint[0] + joint[1]))
        out.view(-1)[idx] = total
    return out


@pytest.mark.parametrize('tau', [1.0, 10.0])
def test_posterior_step_is_bayes_rule(tau):
    process = BitFlipDiffusion(flip_temperature=tau)
    x0 = rows(0.2, (3, 4))
    sched = process.schedule(x0)
    g = torch.Generator().manual_seed(1)
    p = torch.rand(3, 4, generator=g, dtype=torch.float64)
    x = (torch.rand(3, 4, generator=g) < 0.5).double()
    for step in (1, 2, 4):
        got = process.posterior(p, x, step, sched)
        torch.testing.assert_close(got, bayes_reference(p, x, step, sched))
    # given x_0 for sure, the chain's posterior is not the marginal prior
    ones = torch.ones(1, 2, dtype=torch.float64)
    post = process.posterior(ones, torch.tensor([[0., 1.]]), 1, sched)
    assert post[0, 0] < post[0, 1]


def test_faithful_posterior_is_the_stale_state_free_formula():
    process = BitFlipDiffusion(faithful=True)
    sched = process.schedule(rows())
    p = torch.tensor([[0.1, 0.9]])
    g, e = float(sched.gamma_bar[-1]), float(sched.epsilon_bar[-1])
    expected = p * g + (1 - p) * (1 - e)
    for step, x in ((1, torch.zeros(1, 2)), (3, torch.ones(1, 2))):
        torch.testing.assert_close(process.posterior(p, x, step, sched),
                                   expected)


def test_sampler_returns_binary_rows_and_last_probabilities():
    process = BitFlipDiffusion()
    calls = []

    def denoiser(x, t):
        calls.append(int(t[0]))
        return torch.full_like(x, 20.0)  # p ~ 1 everywhere

    x, p = process.p_sample(denoiser, rows(), generator=torch.Generator()
                            .manual_seed(0))
    assert calls == [4, 3, 2, 1, 0]
    assert torch.all(x == 1) and torch.allclose(p, torch.ones_like(p))
    with pytest.raises(ValueError, match='steps'):
        process.p_sample(denoiser, rows(), steps=6)


@pytest.mark.parametrize('alpha', [0.0, 0.25, 0.5, 1.0])
def test_focal_loss_is_minimised_at_the_true_labels(alpha):
    x0 = torch.zeros(1, 1000)
    x0[0, :4] = 1  # pos_weight 249
    grid = torch.linspace(-12, 12, 49)
    losses = {}
    for label in (0, 1):
        values = []
        for v in grid:
            logits = torch.where(x0 > 0, torch.tensor(12.0) if label == 0
                                 else v, v if label == 0 else -12.0)
            values.append(float(flip_denoising_loss(logits, x0,
                                                    alpha=alpha)))
        losses[label] = torch.tensor(values)
    # negatives: lowest at the lowest logit; positives: at the highest
    if alpha < 1:
        assert int(losses[0].argmin()) == 0
    if alpha > 0:
        assert int(losses[1].argmin()) == len(grid) - 1
    # faithful: alpha * pos_weight = 62 > 1 flips the negatives' sign, so
    # p -> 1 on the non-interactions lowers the loss (it goes negative)
    def negatives_at(v):
        return torch.where(x0 > 0, torch.tensor(12.0), torch.tensor(v))
    low = flip_denoising_loss(negatives_at(-6.0), x0, faithful=True)
    high = flip_denoising_loss(negatives_at(6.0), x0, faithful=True)
    assert high < low and high < 0
    fixed_low = flip_denoising_loss(negatives_at(-6.0), x0, alpha=alpha)
    fixed_high = flip_denoising_loss(negatives_at(6.0), x0, alpha=alpha)
    if alpha < 1:  # (alpha = 1 gives the negatives no weight at all)
        assert fixed_high > fixed_low >= 0


def test_bce_option_and_bad_arguments():
    x0 = rows()
    logits = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    w = (x0 == 0).sum() / (x0 == 1).sum()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, x0, pos_weight=w)
    torch.testing.assert_close(flip_denoising_loss(logits, x0, 'bce'),
                               expected)
    for kwargs, match in (({'loss': 'mse'}, 'loss'),
                          ({'alpha': 1.5}, 'focal_alpha'),
                          ({'gamma': -1.0}, 'focal_gamma')):
        with pytest.raises(ValueError, match=match):
            flip_denoising_loss(logits, x0, **kwargs)
    with pytest.raises(ValueError, match='flip_temperature'):
        BitFlipDiffusion(flip_temperature=0.0)


def test_interest_debias_checks_every_modality_with_its_clusters():
    # 1 user, 6 items; clusters image [0,0,1,1,2,2], audio [0,1,0,1,0,1]
    x0 = torch.tensor([[1., 1., 1., 0., 0., 0.]])
    gen = torch.tensor([[1., 1., 0., 1., 1., 0.]])  # 2 removed, 3, 4 added
    image = torch.tensor([0, 0, 1, 1, 2, 2])
    audio = torch.tensor([0, 1, 0, 1, 0, 1])
    out = interest_debias(x0, gen, {'image': image}, sample_ratio=1.0)
    # image counts [2, 1, 0]: 3 (cluster 1) kept, 4 (cluster 2) undone;
    # removal of 2 (count 1 <= min 1 + 1) kept
    assert out.tolist() == [[1., 1., 0., 1., 0., 0.]]
    out = interest_debias(x0, gen, {'image': image, 'audio': audio},
                          sample_ratio=1.0)
    assert out.tolist() == [[1., 1., 0., 1., 0., 0.]]
    x0b = torch.tensor([[1., 0., 1., 0., 1., 1.]])  # audio counts [3, 1]
    genb = torch.tensor([[0., 0., 1., 0., 1., 1.]])  # removes item 0
    assert interest_debias(x0b, genb, {'audio': audio},
                           1.0).tolist() == x0b.tolist()  # restored
    assert interest_debias(x0, gen, {'image': image}, 0.0).equal(gen)
