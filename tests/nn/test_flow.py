import math

import pytest
import torch

from pyg_mmrec.nn import (
    FlowMatchingGenerator,
    frequency_prior,
    mask_interpolate,
    sinusoidal_time_embedding,
)
from pyg_mmrec.nn.flow import _BatchedScores


def test_mask_interpolate_endpoints():
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(50, 16, generator=gen)
    x0 = torch.bernoulli(torch.full((50, 16), 0.3), generator=gen)
    assert torch.equal(mask_interpolate(x1, x0, torch.zeros(50), gen), x0)
    assert torch.equal(mask_interpolate(x1, x0, torch.ones(50), gen), x1)
    # A 0-dim time applies to every row:
    assert torch.equal(mask_interpolate(x1, x0, torch.tensor(1.0), gen), x1)
    with pytest.raises(ValueError, match='same shape'):
        mask_interpolate(x1, x0[:, :3], torch.ones(50))


def test_mask_interpolate_zero_draw(monkeypatch):
    # Even a uniform draw of exactly 0 must not take x1 at t = 0:
    x1, x0 = torch.ones(4, 3), torch.zeros(4, 3)
    monkeypatch.setattr(torch, 'rand',
                        lambda shape, **kwargs: torch.zeros(shape))
    assert torch.equal(mask_interpolate(x1, x0, torch.zeros(4)), x0)
    assert torch.equal(mask_interpolate(x1, x0, torch.full((4, ), 1e-6)), x1)


@pytest.mark.parametrize('t', [0.1, 0.5, 0.8])
def test_mask_interpolate_fraction(t):
    gen = torch.Generator().manual_seed(1)
    x1, x0 = torch.ones(20, 5000), torch.zeros(20, 5000)
    times = torch.full((20, ), t)
    times[::2] = 1 - t  # rows with different times
    out = mask_interpolate(x1, x0, times, gen)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(out.mean(dim=1), times, atol=0.03)


def test_frequency_prior():
    gen = torch.Generator().manual_seed(2)
    freq = torch.tensor([0.0, 0.05, 0.5, 0.9, 1.0])
    x0 = frequency_prior(freq, 20000, gen)
    assert x0.shape == (5, 20000) and x0.dtype == torch.float
    assert set(x0.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(x0.mean(dim=1), freq, atol=0.015)
    assert x0[0].sum() == 0 and x0[4].sum() == 20000


def reference_forward(model, x_t, conditions, t):
    emb = sinusoidal_time_embedding(t, model.dim, 2 * math.pi)
    tokens = [x_t, *conditions, emb]
    out = []
    for n in range(x_t.size(0)):
        z = torch.stack([tok[n] for tok in tokens])  # [T, d]
        z = (z - z.mean(-1, keepdim=True)) / torch.sqrt(
            z.var(-1, unbiased=False, keepdim=True) + 1e-5)
        q = z @ model.lin_q.weight.t()
        k = z @ model.lin_k.weight.t()
        v = z @ model.lin_v.weight.t()
        attn = torch.softmax(q @ k.t() / math.sqrt(model.dim), dim=-1)
        out.append((attn @ v).mean(0))
    return torch.stack(out)


@pytest.mark.parametrize('num_conditions', [1, 2, 3])
@pytest.mark.parametrize('dim', [8, 64])
def test_generator_forward(num_conditions, dim):
    torch.manual_seed(3)
    model = FlowMatchingGenerator(dim, num_conditions)
    assert str(model) == (f'FlowMatchingGenerator(dim={dim}, '
                          f'num_conditions={num_conditions})')
    # No dead parameters: exactly the three bias-free maps.
    assert sum(p.numel() for p in model.parameters()) == 3 * dim * dim
    x_t = torch.randn(7, dim)
    conds = [torch.randn(7, dim) for _ in range(num_conditions)]
    t = torch.rand(7)
    out = model(x_t, conds, t)
    assert out.shape == (7, dim)
    assert torch.allclose(out, reference_forward(model, x_t, conds, t),
                          atol=1e-5)
    # Token order does not matter:
    assert torch.allclose(model(x_t, conds[::-1], t), out, atol=1e-6)
    with pytest.raises(ValueError, match='conditions'):
        model(x_t, conds + [conds[0]], t)
    with pytest.raises(ValueError, match='shape'):
        model(x_t, [c[:, :dim // 2] for c in conds], t)

    model.reset_parameters()
    assert not torch.allclose(model(x_t, conds, t), out)

    any_count = FlowMatchingGenerator(dim, num_conditions=None)
    assert any_count(x_t, conds + [conds[0]], t).shape == (7, dim)


def test_generator_gradients_equal_the_reference():
    """The factored attention (one score projection, the value projection
    after the mean) has the gradients of the plain q/k/v formula."""
    torch.manual_seed(12)
    model = FlowMatchingGenerator(16, num_conditions=2).double()
    x_t = torch.randn(9, 16, dtype=torch.double, requires_grad=True)
    conds = [torch.randn(9, 16, dtype=torch.double, requires_grad=True)
             for _ in range(2)]
    t = torch.rand(9, dtype=torch.double)
    weight = torch.randn(9, 16, dtype=torch.double)
    grads = []
    for forward in (model, lambda *a: reference_forward(model, *a)):
        model.zero_grad()
        for leaf in [x_t, *conds]:
            leaf.grad = None
        (forward(x_t, conds, t) * weight).sum().backward()
        grads.append([p.grad.clone() for p in (*model.parameters(), x_t,
                                               *conds)])
    for got, want in zip(*grads):
        assert torch.allclose(got, want, atol=1e-10)
    # The batched scores' own backward against autograd's:
    a, b = torch.randn(2, 5, 4, 6, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(_BatchedScores.apply, (a, b))


def fixed_batch(num_items=64, dim=16, seed=4):
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(num_items, 20, generator=gen)
    text = torch.randn(num_items, 12, generator=gen)
    x1 = 0.1 * (image @ torch.randn(20, dim, generator=gen) / math.sqrt(20))
    freq = torch.rand(num_items, generator=gen) * 0.1
    return image, text, x1, freq


def test_flow_loss_decreases():
    torch.manual_seed(5)
    dim = 16
    image, text, x1, freq = fixed_batch(dim=dim)
    model = FlowMatchingGenerator(dim, num_conditions=2)
    proj = torch.nn.ModuleList([torch.nn.Linear(20, dim),
                                torch.nn.Linear(12, dim)])
    params = list(model.parameters()) + list(proj.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-2)

    def evaluate():
        with torch.no_grad():
            gen = torch.Generator().manual_seed(123)
            loss, x_hat = model.loss(x1, [proj[0](image), proj[1](text)],
                                     freq, gen)
        assert x_hat.shape == x1.shape
        return loss.item()

    before = evaluate()
    gen = torch.Generator().manual_seed(6)
    for _ in range(100):
        optimizer.zero_grad()
        loss, _ = model.loss(x1, [proj[0](image), proj[1](text)], freq, gen)
        loss.backward()
        optimizer.step()
    after = evaluate()
    assert after < 0.3 * before, (before, after)


@pytest.mark.parametrize('detach_target', [True, False])
def test_flow_loss_detach(detach_target):
    torch.manual_seed(7)
    model = FlowMatchingGenerator(8, num_conditions=1)
    x1 = torch.randn(10, 8, requires_grad=True)
    cond = torch.randn(10, 8, requires_grad=True)
    loss, x_hat = model.loss(x1, [cond], torch.full((10, ), 0.2),
                             detach_target=detach_target)
    assert x_hat.requires_grad
    loss.backward()
    assert cond.grad is not None and model.lin_v.weight.grad is not None
    if detach_target:
        assert x1.grad is None
    else:
        assert x1.grad is not None and x1.grad.abs().sum() > 0


def record_states(model):
    calls = []

    def hook(module, args):
        calls.append((args[0].clone(), args[2].clone()))

    return calls, model.register_forward_pre_hook(hook)


def test_faithful_sampler_binarizes():
    torch.manual_seed(8)
    dim, num_items = 16, 40
    model = FlowMatchingGenerator(dim, num_conditions=2)
    conds = [torch.randn(num_items, dim) for _ in range(2)]
    freq = torch.rand(num_items) * 0.3
    calls, handle = record_states(model)
    out = model.sample(conds, freq, num_steps=10, start_step=8, binarize=True,
                       generator=torch.Generator().manual_seed(9))
    handle.remove()
    assert out.shape == (num_items, dim) and not out.requires_grad
    assert len(calls) == 2
    prior = frequency_prior(freq, dim, torch.Generator().manual_seed(9))
    (x_a, t_a), (x_b, t_b) = calls
    assert torch.equal(x_a, prior)
    assert torch.allclose(t_a, torch.full((num_items, ), 0.8))
    assert torch.allclose(t_b, torch.full((num_items, ), 0.9))
    # Reproduce the one Euler step, the binarisation and the OR:
    with torch.no_grad():
        x_hat = model(prior, conds, t_a)
    mid = prior + (x_hat - prior) / (1 - 0.8) / 10
    expected = ((mid >= 0.5) | (prior > 0.5)).float()
    assert torch.equal(x_b, expected)
    assert set(x_b.unique().tolist()) <= {0.0, 1.0}
    with torch.no_grad():
        assert torch.allclose(out, model(expected, conds, t_b))

    # start_step=None with binarize is the original's start (s_steps = 2):
    calls, handle = record_states(model)
    model.sample(conds, freq, binarize=True)
    handle.remove()
    assert len(calls) == 2

    # With embedding-sized predictions (|x_hat| << 0.5) the binarised state
    # collapses to the prior bits: the quirk the default sampler avoids.
    with torch.no_grad():
        model.lin_v.weight.mul_(0.03)
    calls, handle = record_states(model)
    model.sample(conds, freq, start_step=8, binarize=True,
                 generator=torch.Generator().manual_seed(9))
    handle.remove()
    assert torch.equal(calls[1][0], prior)


@pytest.mark.parametrize('num_steps', [1, 4, 10])
def test_default_sampler(num_steps):
    torch.manual_seed(10)
    dim, num_items = 16, 30
    model = FlowMatchingGenerator(dim, num_conditions=3)
    conds = [torch.randn(num_items, dim) for _ in range(3)]
    freq = torch.rand(num_items) * 0.3
    calls, handle = record_states(model)
    out = model.sample(conds, freq, num_steps=num_steps,
                       generator=torch.Generator().manual_seed(11))
    handle.remove()
    assert out.shape == (num_items, dim)
    assert len(calls) == num_steps
    prior = frequency_prior(freq, dim, torch.Generator().manual_seed(11))
    assert torch.equal(calls[0][0], prior)
    x = prior
    for k, (state, t) in enumerate(calls):
        assert torch.allclose(t, torch.full((num_items, ), k / num_steps))
        assert torch.allclose(state, x, atol=1e-6)
        with torch.no_grad():
            x_hat = model(state, conds, t)
        x = state + (x_hat - state) / (1 - k / num_steps) / num_steps
        if k > 0:  # not binarised: continuous values
            assert not set(state.unique().tolist()) <= {0.0, 1.0}
    # The returned prediction is where the last Euler step lands:
    assert torch.allclose(out, x, atol=1e-5)


def test_sampler_arguments():
    model = FlowMatchingGenerator(8, num_conditions=1)
    cond = [torch.randn(5, 8)]
    freq = torch.full((5, ), 0.1)
    with pytest.raises(ValueError, match='start_step'):
        model.sample(cond, freq, num_steps=10, start_step=10)
    with pytest.raises(ValueError, match='num_steps'):
        model.sample(cond, freq, num_steps=0)
    with pytest.raises(ValueError, match='even'):
        FlowMatchingGenerator(7)
