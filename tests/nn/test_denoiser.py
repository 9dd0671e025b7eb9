import math

import pytest
import torch
import torch.nn.functional as F

from pyg_mmrec.nn import GaussianDiffusion, sinusoidal_time_embedding
from pyg_mmrec.nn.denoiser import (
    BipartiteGuidance,
    Denoiser,
    FlipTransformerDenoiser,
    rows_times_weight,
)


def test_denoiser_forward_and_dropout():
    torch.manual_seed(4)
    model = Denoiser(30, hidden_channels=16, time_channels=6, dropout=0.5)
    assert repr(model) == 'Denoiser(30, hidden_channels=16)'
    assert repr(Denoiser(6710)) == 'Denoiser(6710, hidden_channels=1000)'
    x = torch.rand(5, 30)
    t = torch.tensor([0, 1, 2, 3, 4])
    model.eval()
    out = model(x, t)
    assert out.shape == (5, 30)
    assert torch.equal(out, model(x, t))
    # Reference forward in eval mode (no dropout):
    temb = model.time_lin(sinusoidal_time_embedding(t, 6))
    h = torch.tanh(model.lin1(torch.cat([x, temb], dim=-1)))
    assert torch.allclose(out, model.lin2(h), atol=1e-6)
    # Steps matter:
    assert not torch.allclose(out, model(x, torch.zeros(5, dtype=torch.long)))

    model.train()
    a, b = model(x, t), model(x, t)
    assert not torch.equal(a, b)
    assert not torch.equal(a, out)

    normed = Denoiser(30, hidden_channels=16, time_channels=6,
                      normalize_input=True).eval()
    temb = normed.time_lin(sinusoidal_time_embedding(t, 6))
    h = torch.tanh(normed.lin1(torch.cat([F.normalize(x, dim=-1), temb],
                                         dim=-1)))
    assert torch.allclose(normed(x, t), normed.lin2(h), atol=1e-6)
    assert torch.allclose(normed(3 * x, t), normed(x, t), atol=1e-6)

    with pytest.raises(ValueError, match="'x'"):
        model(torch.rand(5, 29), t)


@pytest.mark.parametrize('density', [0.004, 0.3])
def test_rows_times_weight_sparse_and_dense_products(monkeypatch, density):
    """Binary rows below the density threshold take the sparse product
    (through torch.sparse.mm), denser rows the dense one: the same values
    and weight gradients as the dense formula either way, and the
    denoisers' outputs do not depend on the path."""
    import pyg_mmrec.nn.denoiser as module
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(64, 500, generator=gen) < density).float()
    x[3] = 0.0  # an empty row
    weight = torch.randn(12, 510, generator=gen, requires_grad=True)
    calls = []
    sparse_mm = torch.sparse.mm
    monkeypatch.setattr(torch.sparse, 'mm',
                        lambda *a: calls.append(1) or sparse_mm(*a))
    out = rows_times_weight(x, weight[:, :500])
    assert len(calls) == (1 if density < module.SPARSE_INPUT_DENSITY
                          else 0)
    ref = x @ weight[:, :500].detach().t()
    torch.testing.assert_close(out, ref)
    out.pow(2).sum().backward()
    grad = 2 * (ref.t() @ x)  # d/dW sum((x W^T)^2)
    torch.testing.assert_close(weight.grad[:, :500], grad)
    assert torch.all(weight.grad[:, 500:] == 0)

    t = torch.randint(5, (64, ), generator=gen)
    for model in (Denoiser(500, hidden_channels=16).eval(),
                  FlipTransformerDenoiser(500, hidden_channels=16,
                                          num_layers=1, heads=2,
                                          ff_channels=8,
                                          head_channels=8).eval()):
        got = model(x, t)
        monkeypatch.setattr(module, 'SPARSE_INPUT_DENSITY', -1.0)  # dense
        torch.testing.assert_close(got, model(x, t))
        monkeypatch.setattr(module, 'SPARSE_INPUT_DENSITY', 0.01)


def test_denoiser_init():
    torch.manual_seed(5)
    model = Denoiser(2000, hidden_channels=400, time_channels=10)
    w1 = model.lin1.weight  # [400, 2010]
    assert w1.shape == (400, 2010)
    assert w1.std().item() == pytest.approx(math.sqrt(2 / (2010 + 400)),
                                            rel=0.02)
    assert w1.mean().abs() < 1e-3
    w2 = model.lin2.weight  # [2000, 400]
    assert w2.std().item() == pytest.approx(math.sqrt(2 / 2400), rel=0.02)
    assert model.lin2.bias.std().item() == pytest.approx(0.001, rel=0.1)
    assert model.lin1.bias.std().item() == pytest.approx(0.001, rel=0.15)
    before = w2.clone()
    model.reset_parameters()
    assert not torch.equal(before, model.lin2.weight)


def test_denoiser_fits_noised_rows():
    torch.manual_seed(6)
    diff = GaussianDiffusion()
    model = Denoiser(50, hidden_channels=64, dropout=0.0)
    gen = torch.Generator().manual_seed(7)
    x0 = torch.bernoulli(torch.full((32, 50), 0.2), generator=gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def eval_loss():
        g = torch.Generator().manual_seed(8)
        t = diff.sample_timesteps(32, generator=g)
        with torch.no_grad():
            return F.mse_loss(model(diff.q_sample(x0, t, generator=g), t),
                              x0).item()

    start = eval_loss()
    for _ in range(100):
        t = diff.sample_timesteps(32, generator=gen)
        x_t = diff.q_sample(x0, t, generator=gen)
        loss = (diff.loss_weight(t) *
                ((model(x_t, t) - x0)**2).mean(dim=-1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    end = eval_loss()
    assert end < start / 5


def test_denoiser_bad_arguments():
    with pytest.raises(ValueError, match="'num_items'"):
        Denoiser(0)
    with pytest.raises(ValueError, match="'hidden_channels'"):
        Denoiser(10, hidden_channels=0)
    with pytest.raises(ValueError, match="'time_channels'"):
        Denoiser(10, time_channels=0)
    with pytest.raises(ValueError, match="'dropout'"):
        Denoiser(10, dropout=1.0)


def test_bipartite_guidance_matches_the_dense_gcn_formula():
    torch.manual_seed(0)
    B, I, d, h = 5, 7, 6, 4  # noqa: E741
    rows = torch.rand(B, I)
    rows[0, :] = -0.5  # a noisy row with a negative degree: clamped at 1
    guide = torch.randn(I, d)
    net = BipartiteGuidance(d, h)
    gen = torch.Generator().manual_seed(3)
    out = net(rows, guide, generator=gen)
    # Reference: the dense (B + I)^2 adjacency with self-loops.
    A = torch.zeros(B + I, B + I)
    A[:B, B:], A[B:, :B] = rows, rows.t()
    A += torch.eye(B + I)
    deg = A.sum(1).clamp(min=1.0)
    A_hat = deg.rsqrt()[:, None] * A * deg.rsqrt()[None, :]
    users = torch.randn(B, h, generator=torch.Generator().manual_seed(3))
    x = torch.cat([users, net.lin_guide(guide)])
    z = net.lin_out(A_hat @ x)
    assert torch.allclose(out, z[:B] @ z[B:].t(), atol=1e-5)
    assert out.shape == (B, I)
    with pytest.raises(ValueError, match='guide'):
        net(rows, guide[:3])
