import pytest
import torch

from pyg_mmrec.nn.attention import CoordinateAttention, dropout_keep_mask


def as_multihead(module: CoordinateAttention) -> torch.nn.MultiheadAttention:
    mha = torch.nn.MultiheadAttention(1, 1, dropout=module.dropout,
                                      batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(module.in_weight.view(3, 1))
        mha.in_proj_bias.copy_(module.in_bias)
        mha.out_proj.weight.fill_(float(module.out_weight))
        mha.out_proj.bias.fill_(float(module.out_bias))
    return mha


@pytest.mark.parametrize('mutual', [False, True])
def test_equals_multihead_attention_over_scalar_tokens(mutual):
    torch.manual_seed(0)
    module = CoordinateAttention(chunk_size=7)
    with torch.no_grad():  # non-trivial biases
        module.in_bias.normal_()
        module.out_bias.normal_()
    mha = as_multihead(module).eval()
    module.eval()
    x = torch.randn(20, 16)
    y = torch.randn(20, 16) if mutual else x
    expected = mha(x.unsqueeze(-1), y.unsqueeze(-1), y.unsqueeze(-1),
                   need_weights=False)[0].squeeze(-1)
    with torch.no_grad():  # chunked path
        torch.testing.assert_close(module(x, y if mutual else None),
                                   expected)
    # gradient path, and the gradients match too
    xg = x.clone().requires_grad_()
    out = module(xg, y if mutual else None)
    torch.testing.assert_close(out, expected.detach(), atol=1e-6, rtol=1e-5)
    out.square().sum().backward()
    xm = x.clone().requires_grad_()
    ym = y.clone() if mutual else xm
    mha(xm.unsqueeze(-1), ym.unsqueeze(-1), ym.unsqueeze(-1),
        need_weights=False)[0].square().sum().backward()
    torch.testing.assert_close(xg.grad, xm.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(module.in_weight.grad,
                               mha.in_proj_weight.grad.view(3),
                               atol=1e-5, rtol=1e-4)


def test_query_bias_only_is_the_same_block_after_a_layer_norm():
    # with b_k, b_v, b_o set, x + attention(x) differs from the query-bias
    # version by a per-node constant, which a LayerNorm removes
    torch.manual_seed(2)
    full = CoordinateAttention().eval()
    with torch.no_grad():
        full.in_bias.normal_()
        full.out_bias.normal_()
    short = CoordinateAttention(bias='query').eval()
    with torch.no_grad():
        short.in_weight.copy_(full.in_weight)
        short.in_bias.copy_(full.in_bias[:1])
        short.out_weight.copy_(full.out_weight)
    x = torch.randn(6, 10)
    norm = torch.nn.LayerNorm(10)
    torch.testing.assert_close(norm(x + full(x)), norm(x + short(x)),
                               atol=1e-5, rtol=1e-5)
    assert not torch.allclose(full(x), short(x))
    assert short.out_bias is None and short.in_bias.numel() == 1
    with pytest.raises(ValueError, match='bias'):
        CoordinateAttention(bias='none')


def test_nodes_do_not_see_each_other_and_dropout_only_trains():
    torch.manual_seed(1)
    module = CoordinateAttention(dropout=0.5).eval()
    x = torch.randn(5, 8)
    single = torch.stack([module(x[i:i + 1])[0] for i in range(5)])
    torch.testing.assert_close(module(x), single)
    assert torch.equal(module(x), module(x))  # eval: no dropout
    module.train()
    assert not torch.equal(module(x), module(x))
    with pytest.raises(ValueError, match='dropout'):
        CoordinateAttention(dropout=1.5)
    with pytest.raises(ValueError, match=r'\[N, d\]'):
        module(x, torch.randn(5, 7))


def dense_reference(module: CoordinateAttention, x, y, mask=None, scale=1.0):
    a, b = module.in_weight, module.in_bias
    q, k, v = a[0] * x + b[0], a[1] * y, a[2] * y
    weight = torch.softmax(q.unsqueeze(-1) * k.unsqueeze(-2), dim=-1)
    if mask is not None:
        weight = weight * mask * scale
    return module.out_weight * (weight @ v.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize('chunk_size', [1, 4, 64])
def test_fused_gradients_with_dropout_equal_autograd_on_the_same_mask(
        chunk_size):
    torch.manual_seed(3)
    module = CoordinateAttention(dropout=0.4, bias='query',
                                 chunk_size=chunk_size).double().train()
    with torch.no_grad():
        module.in_bias.normal_()
    x = torch.randn(9, 6, dtype=torch.double, requires_grad=True)
    y = torch.randn(9, 6, dtype=torch.double, requires_grad=True)
    grad = torch.randn(9, 6, dtype=torch.double)
    torch.manual_seed(7)
    out = module(x, y)
    after_forward = torch.rand(3)  # draws between forward and backward
    got = torch.autograd.grad(out, (x, y, module.in_weight), grad)
    after_backward = torch.rand(3)
    # the same draws, chunk by chunk, give the same mask, and the backward
    # pass, drawing the masks again, leaves the global generator alone
    torch.manual_seed(7)
    masks = [dropout_keep_mask((len(rows), 6, 6), 0.4)
             for rows in torch.arange(9).split(chunk_size)]
    assert torch.equal(torch.rand(3), after_forward)
    assert torch.equal(torch.rand(3), after_backward)
    mask = torch.cat([m for m, _ in masks])
    expected = dense_reference(module, x, y, mask, masks[0][1])
    want = torch.autograd.grad(expected, (x, y, module.in_weight), grad)
    torch.testing.assert_close(out, expected)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    assert 0 < mask.sum() < mask.numel()


def test_fused_function_passes_gradcheck_without_dropout():
    torch.manual_seed(4)
    module = CoordinateAttention(chunk_size=3).double()
    x = torch.randn(7, 5, dtype=torch.double, requires_grad=True)
    y = torch.randn(7, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: module(a, b), (x, y))


def test_keep_mask_rate_and_scale():
    torch.manual_seed(0)
    mask, scale = dropout_keep_mask((500, 64, 64), 0.4)
    threshold = round(0.4 * 2 ** 15)
    assert scale == 2 ** 15 / (2 ** 15 - threshold)
    # 2M Bernoulli(0.6) draws: std of the mean ~3.5e-4
    assert abs(mask.float().mean().item() - (1 - threshold / 2 ** 15)) < 2e-3
    # no bias between the four 16-bit fields of one 64-bit draw
    fields = mask.view(-1, 4).float().mean(0)
    assert (fields - 0.6).abs().max() < 3e-3
    none, one = dropout_keep_mask((1000,), 0.0)
    assert none.all() and one == 1.0


def test_dropout_one_leaves_the_bias_only():
    module = CoordinateAttention(dropout=1.0).train()
    with torch.no_grad():
        module.out_bias.fill_(0.5)
    out = module(torch.randn(3, 4))
    torch.testing.assert_close(out, torch.full((3, 4), 0.5))
