import math

import pytest
import torch

from pyg_mmrec.nn import sinusoidal_time_embedding


def test_integer_steps_unit_scale():
    t = torch.tensor([0, 1, 3])
    emb = sinusoidal_time_embedding(t, 10)
    assert emb.shape == (3, 10) and emb.dtype == torch.float
    assert torch.equal(emb[0, :5], torch.ones(5))
    assert torch.equal(emb[0, 5:], torch.zeros(5))
    freqs = [math.exp(-math.log(10000) * k / 5) for k in range(5)]
    expected = [math.cos(3 * f) for f in freqs]
    expected += [math.sin(3 * f) for f in freqs]
    assert torch.allclose(emb[2], torch.tensor(expected), atol=1e-6)
    # freq_0 = 1 (no 2 pi):
    assert emb[1, 0].item() == pytest.approx(math.cos(1.0), abs=1e-6)
    assert emb[1, 5].item() == pytest.approx(math.sin(1.0), abs=1e-6)


def test_continuous_times_two_pi_scale():
    t = torch.tensor([0.0, 0.3, 0.9])
    emb = sinusoidal_time_embedding(t, 64, frequency_scale=2 * math.pi)
    assert emb.shape == (3, 64)
    assert torch.equal(emb[0, :32], torch.ones(32))
    assert torch.equal(emb[0, 32:], torch.zeros(32))
    omega_1 = 2 * math.pi * math.exp(-math.log(1e4) * 1 / 32)
    assert emb[1, 1].item() == pytest.approx(math.cos(0.3 * omega_1),
                                             abs=1e-6)
    assert emb[1, 33].item() == pytest.approx(math.sin(0.3 * omega_1),
                                              abs=1e-6)
    # omega_0 = 2 pi:
    assert emb[2, 0].item() == pytest.approx(math.cos(0.9 * 2 * math.pi),
                                             abs=1e-6)
    small = sinusoidal_time_embedding(torch.tensor([0.5]), 4, 2 * math.pi)
    omega = [2 * math.pi, 2 * math.pi * math.exp(-math.log(1e4) / 2)]
    expected = [math.cos(0.5 * w) for w in omega]
    expected += [math.sin(0.5 * w) for w in omega]
    assert torch.allclose(small[0], torch.tensor(expected), atol=1e-6)


@pytest.mark.parametrize('scale', [1.0, 2 * math.pi])
def test_odd_dim_appends_a_zero_column(scale):
    odd = sinusoidal_time_embedding(torch.tensor([2]), 7, scale)
    assert odd.shape == (1, 7)
    freqs = [scale * math.exp(-math.log(10000) * k / 3) for k in range(3)]
    expected = [math.cos(2 * f) for f in freqs]
    expected += [math.sin(2 * f) for f in freqs] + [0.0]
    assert torch.allclose(odd[0], torch.tensor(expected), atol=1e-5)
    assert odd[0, 6].item() == 0.0
    # Without frequencies only the zero column is left:
    assert torch.equal(sinusoidal_time_embedding(torch.tensor([5]), 1, scale),
                       torch.zeros(1, 1))


def test_dtype_and_shape():
    # Integer steps are embedded in float32; floating times keep their dtype:
    for dtype in (torch.long, torch.int32):
        emb = sinusoidal_time_embedding(torch.tensor([1, 2], dtype=dtype), 6)
        assert emb.dtype == torch.float32
    for dtype in (torch.float16, torch.float32, torch.float64):
        t = torch.tensor([0.25, 0.5], dtype=dtype)
        assert sinusoidal_time_embedding(t, 6).dtype == dtype
    t64 = torch.tensor([0.3], dtype=torch.float64)
    emb = sinusoidal_time_embedding(t64, 4, 2 * math.pi)
    omega_1 = 2 * math.pi * math.exp(-math.log(1e4) / 2)
    assert emb[0, 1].item() == pytest.approx(math.cos(0.3 * omega_1),
                                             abs=1e-12)
    # A 0-dim tensor is one time:
    one = sinusoidal_time_embedding(torch.tensor(3), 10)
    assert one.shape == (1, 10)
    assert torch.equal(one[0], sinusoidal_time_embedding(
        torch.tensor([0, 1, 3]), 10)[2])
    with pytest.raises(ValueError, match="'dim'"):
        sinusoidal_time_embedding(torch.tensor([1]), 0)
