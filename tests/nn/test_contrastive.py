import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from pyg_mmrec.nn.contrastive import (
    info_nce,
    mdmns_noise_levels,
    noisy_view_info_nce,
)


def naive_info_nce(anchor, target, temperature=0.5, index=None):
    a, b = F.normalize(anchor, dim=-1), F.normalize(target, dim=-1)
    if index is None:
        index = torch.arange(a.size(0))
    return F.cross_entropy(a[index] @ b.T / temperature, index)


def inputs(n=10, d=6, seed=0, dtype=torch.float):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=dtype)
    y = x + 0.7 * torch.randn(n, d, generator=gen, dtype=dtype)
    return x.requires_grad_(), y.requires_grad_()


INDEX = torch.tensor([3, 0, 3, 7, 9, 3, 1])  # with duplicates


@pytest.mark.parametrize('chunk_size', [1, 3, 10, 64])
@pytest.mark.parametrize('index', [None, INDEX])
@pytest.mark.parametrize('temperature', [0.2, 0.5])
def test_info_nce_matches_cross_entropy(chunk_size, index, temperature):
    x, y = inputs()
    out = info_nce(x, y, temperature, index=index, chunk_size=chunk_size)
    gx, gy = torch.autograd.grad(out, (x, y))
    ref = naive_info_nce(x, y, temperature, index)
    rx, ry = torch.autograd.grad(ref, (x, y))
    assert out.shape == () and out.dtype == torch.float
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(gx, rx, atol=1e-6)
    assert torch.allclose(gy, ry, atol=1e-6)
    # Detached target: no gradient for it, the same one for the anchor.
    y2 = y.detach().clone().requires_grad_()
    out = info_nce(x, y2.detach(), temperature, index, chunk_size)
    out.backward()
    assert y2.grad is None
    assert torch.allclose(x.grad, rx, atol=1e-6)
    # Detached anchor, gradient for the target only:
    x2 = x.detach().clone().requires_grad_()
    out = info_nce(x2.detach(), y, temperature, index, chunk_size)
    (gy2, ) = torch.autograd.grad(out, y)
    assert torch.allclose(gy2, ry, atol=1e-6)


@pytest.mark.parametrize('index', [None, torch.tensor([2, 2, 0])])
def test_info_nce_gradcheck(index):
    x, y = inputs(n=4, d=3, seed=1, dtype=torch.double)
    assert torch.autograd.gradcheck(
        lambda a, b: info_nce(a, b, 0.3, index=index, chunk_size=2),
        (x, y))
    assert torch.autograd.gradcheck(
        lambda a: info_nce(a, y.detach(), 0.3, index=index, chunk_size=3),
        (x, ))
    # One tensor as both views, gradients through both:
    assert torch.autograd.gradcheck(
        lambda a: info_nce(a, a, 0.3, index=index, chunk_size=3), (x, ))


def test_info_nce_by_hand():
    # Orthonormal rows, tau = 1: the logits are the identity matrix, so each
    # row's loss is log(e^1 + e^0) - 1 = log(1 + e^-1).
    x = torch.tensor([[2.0, 0.0], [0.0, 0.5]])  # norms do not matter
    expected = math.log(1 + math.exp(-1))
    assert info_nce(x, x, 1.0).item() == pytest.approx(expected, abs=1e-6)
    # Target rows swapped: the positive logit is 0, the other one 1.
    y = x.flip(0)
    expected = math.log(math.e + 1)
    assert info_nce(x, y, 1.0).item() == pytest.approx(expected, abs=1e-6)
    # tau = 0.5 doubles the logits; only the first row as anchor (twice):
    out = info_nce(x, x, 0.5, index=torch.tensor([0, 0]), chunk_size=1)
    expected = math.log(math.exp(2) + 1) - 2
    assert out.item() == pytest.approx(expected, abs=1e-6)


def test_coinciding_views_minimal():
    gen = torch.Generator().manual_seed(3)
    x = 3 * torch.randn(200, 32, generator=gen)
    same = info_nce(x, x.detach(), chunk_size=64)
    shuffled = info_nce(x, x[torch.randperm(200, generator=gen)],
                        chunk_size=64)
    other = info_nce(x, torch.randn(200, 32, generator=gen), chunk_size=64)
    assert same < other and same < shuffled
    # The loss grows with the noise level:
    losses = []
    for s in [0, 1, 2, 4]:
        gen.manual_seed(4)
        losses.append(noisy_view_info_nce(x, [s], generator=gen).item())
    assert losses == sorted(losses) and losses[0] < losses[-1] - 0.1
    assert losses[0] == pytest.approx(same.item(), abs=1e-6)


def test_mdmns_noise_levels():
    assert mdmns_noise_levels(5) == [0, 0, 1, 2]
    assert mdmns_noise_levels(20) == [2, 2, 5, 10]
    assert mdmns_noise_levels(1) == [0, 0, 0, 0]
    assert mdmns_noise_levels(50) == [int(50 / 10), int(50 / 8),
                                      int(50 / 4), int(50 / 2)]
    with pytest.raises(ValueError, match='num_steps'):
        mdmns_noise_levels(0)


def test_noisy_view_zero_levels():
    x, _ = inputs(n=12, d=5, seed=5)
    out = noisy_view_info_nce(x, [0, 0], 0.4, chunk_size=5)
    ref = 2 * naive_info_nce(x, x.detach(), 0.4)
    assert torch.allclose(out, ref, atol=1e-6)
    gx, = torch.autograd.grad(out, x)
    rx, = torch.autograd.grad(ref, x)
    assert torch.allclose(gx, rx, atol=1e-6)


def test_noisy_view_fresh_noise(monkeypatch):
    x, _ = inputs(n=12, d=5, seed=6)
    calls = []
    randn = torch.randn

    def counting_randn(*args, **kwargs):
        calls.append(args)
        return randn(*args, **kwargs)

    monkeypatch.setattr(torch, 'randn', counting_randn)
    gen = torch.Generator().manual_seed(7)
    out = noisy_view_info_nce(x, [0, 1.5, 0, 1.5, 3], index=INDEX,
                              generator=gen, chunk_size=4)
    assert len(calls) == 3  # once per non-zero level, none for s = 0
    monkeypatch.undo()

    # Equal to the naive loop with the same generator state:
    gen.manual_seed(7)
    ref = 0
    for s in [0, 1.5, 0, 1.5, 3]:
        if s == 0:
            target = x.detach()
        else:
            target = (x + s * torch.randn(x.shape, generator=gen)).detach()
        ref = ref + naive_info_nce(x, target, index=INDEX)
    assert torch.allclose(out, ref, atol=1e-5)

    # A repeated level s > 0 gives two different views:
    gen.manual_seed(7)
    twice = noisy_view_info_nce(x, [1.5, 1.5], generator=gen)
    gen.manual_seed(7)
    once = noisy_view_info_nce(x, [1.5], generator=gen)
    assert not torch.allclose(twice, 2 * once, atol=1e-4)


class Recorder(TorchDispatchMode):
    r"""Records the largest tensor any op returns and the FLOPs of all
    matrix products."""
    MM = {'mm', 'addmm', 'addmm_', 'bmm', 'baddbmm', 'baddbmm_'}

    def __init__(self):
        super().__init__()
        self.max_numel = 0
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in self.MM:
            x, y = args[-2], args[-1]
            assert x.dim() == 2 and y.dim() == 2
            self.flops += 2 * x.size(0) * x.size(1) * y.size(1)
        for t in (out if isinstance(out, (tuple, list)) else (out, )):
            if isinstance(t, torch.Tensor):
                self.max_numel = max(self.max_numel, t.numel())
        return out


def test_memory_and_flops():
    n, d, chunk = 3000, 16, 256
    x, y = inputs(n=n, d=d, seed=8)
    rec = Recorder()
    with rec:
        loss = info_nce(x, y, chunk_size=chunk)
        saved = loss.grad_fn.saved_tensors
        loss.backward()
    # No tensor larger than one chunk of logits was ever created:
    assert rec.max_numel == chunk * n
    assert all(t.numel() <= n * d for t in saved)
    assert torch.allclose(loss, naive_info_nce(x, y), atol=1e-5)

    # FLOPs: one [n, d] x [d, n] product forward; recomputation plus one
    # product per input that requires a gradient backward. (In bfloat16 the
    # last chunk of 300 - 4 * 64 = 44 anchors is padded to 64 rows.)
    x, y = inputs(n=300, d=d, seed=9)
    for target, num_mm in [(y, 4), (y.detach(), 3)]:
        for matmul_dtype in [None, torch.bfloat16]:
            rows = 300 if matmul_dtype is None else 320
            mm = 2 * rows * 300 * d
            rec = Recorder()
            with rec:
                loss = info_nce(x, target, chunk_size=64,
                                matmul_dtype=matmul_dtype)
            assert rec.flops == mm
            rec = Recorder()
            with rec:
                loss.backward()
            assert rec.flops == (num_mm - 1) * mm
            x.grad = y.grad = None


class ShapeRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.shapes = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in Recorder.MM:
            self.shapes.add(tuple(tuple(t.shape) for t in args[-2:]))
        return func(*args, **(kwargs or {}))


def test_low_precision_products_have_few_shapes():
    # Anchor counts 150..269 (like a batch's distinct users): the bfloat16
    # products see 2 row counts (256, 384) instead of 120, so that oneDNN's
    # per-shape caches stay small; the values are those without padding.
    x, y = inputs(n=400, d=8, seed=12)
    rec = ShapeRecorder()
    gen = torch.Generator().manual_seed(0)
    for m in range(150, 270):
        index = torch.randperm(400, generator=gen)[:m]
        with rec:
            loss = info_nce(x, y, index=index, matmul_dtype=torch.bfloat16)
            loss.backward()
    # logits = a @ b.T, grad_a = g @ b, grad_b = g.T @ a, for 256 and 384:
    assert rec.shapes == {shape for m in (256, 384) for shape in [
        ((m, 8), (8, 400)), ((m, 400), (400, 8)), ((400, m), (m, 8))]}
    low = info_nce(x, y, index=index, matmul_dtype=torch.bfloat16)
    a = F.normalize(x[index]).bfloat16()
    b = F.normalize(y).bfloat16()
    logits = (a * 2.0).float() @ b.float().t()  # the same rounding, unpadded
    assert torch.allclose(low, F.cross_entropy(logits, index), atol=1e-4)


def test_matmul_dtype_bfloat16():
    x, y = inputs(n=500, d=64, seed=10)
    index = torch.randint(0, 500, (300, ), generator=torch.Generator()
                          .manual_seed(0))
    out = info_nce(x, y, index=index, chunk_size=128)
    gx, gy = torch.autograd.grad(out, (x, y))
    low = info_nce(x, y, index=index, chunk_size=128,
                   matmul_dtype=torch.bfloat16)
    lx, ly = torch.autograd.grad(low, (x, y))
    assert low.dtype == torch.float
    assert torch.allclose(low, out, rtol=1e-2)
    assert (lx - gx).norm() < 2e-2 * gx.norm()
    assert (ly - gy).norm() < 2e-2 * gy.norm()
    # And through the noisy views:
    gen = torch.Generator().manual_seed(11)
    a = noisy_view_info_nce(x, [0, 1], generator=gen)
    gen.manual_seed(11)
    b = noisy_view_info_nce(x, [0, 1], generator=gen,
                            matmul_dtype=torch.bfloat16)
    assert torch.allclose(a, b, rtol=1e-2)


def test_dtypes():
    x, y = inputs(dtype=torch.double)
    out = info_nce(x, y)
    assert out.dtype == torch.double
    assert torch.allclose(out, naive_info_nce(x, y), atol=1e-12)
    # Half inputs are computed in float32 (gradients flow back in half):
    xh = x.detach().half().requires_grad_()
    out = info_nce(xh, y.detach().half())
    assert out.dtype == torch.float
    ref = naive_info_nce(xh.float(), y.detach().half().float())
    assert torch.allclose(out, ref, atol=1e-6)
    out.backward()
    assert xh.grad.dtype == torch.half
    gen = torch.Generator().manual_seed(12)
    out = noisy_view_info_nce(xh, [0, 0.5], generator=gen)
    assert out.dtype == torch.float and torch.isfinite(out)


def test_bad_input():
    x, y = inputs()
    with pytest.raises(ValueError, match="'anchor' and 'target'"):
        info_nce(x, y[:5])
    with pytest.raises(ValueError, match="'anchor' and 'target'"):
        info_nce(x, y[:, :3])
    with pytest.raises(ValueError, match="'anchor' and 'target'"):
        info_nce(x.view(-1), y.view(-1))
    for tau in [0.0, -1.0, float('nan'), float('inf')]:
        with pytest.raises(ValueError, match='temperature'):
            info_nce(x, y, tau)
        with pytest.raises(ValueError, match='temperature'):
            noisy_view_info_nce(x, [0], tau)
    for chunk_size in [0, -3, 2.5]:
        with pytest.raises(ValueError, match='chunk_size'):
            info_nce(x, y, chunk_size=chunk_size)
        with pytest.raises(ValueError, match='chunk_size'):
            noisy_view_info_nce(x, [0], chunk_size=chunk_size)
    with pytest.raises(ValueError, match='index'):
        info_nce(x, y, index=torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match='index'):
        info_nce(x, y, index=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match='index'):
        info_nce(x, y, index=torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match='matmul_dtype'):
        info_nce(x, y, matmul_dtype=torch.int32)
    with pytest.raises(ValueError, match="'x'"):
        noisy_view_info_nce(x.view(-1), [0])
    with pytest.raises(ValueError, match="'x'"):
        noisy_view_info_nce(torch.ones(3, 2, dtype=torch.long), [0])
    with pytest.raises(ValueError, match="'target'"):
        info_nce(x, torch.ones(10, 6, dtype=torch.long))
    with pytest.raises(ValueError, match='noise_levels'):
        noisy_view_info_nce(x, [])
    with pytest.raises(ValueError, match='noise_levels'):
        noisy_view_info_nce(x, [1, -0.5])
