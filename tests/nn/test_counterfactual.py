import math

import pytest
import torch

from pyg_mmrec.nn import CounterfactualAttention, CounterfactualEncoder


def dense_block(block, x, x_int=None):
    # the block's formula written out with raw weight matrices
    W = lambda lin: lin.weight.t()  # noqa: E731
    D = x.size(1)
    s = (x @ W(block.query)) @ (x @ W(block.key)).t() / math.sqrt(D)
    if x_int is not None:
        s = s - ((x_int @ W(block.query_int)) @
                 (x_int @ W(block.key_int)).t() / math.sqrt(D))
    a = torch.exp(s - s.max(1, keepdim=True).values)
    a = a / a.sum(1, keepdim=True)
    h = x + (a @ (x @ W(block.value))) @ W(block.out)
    y = torch.nn.functional.layer_norm(h, (D, ), block.norm1.weight,
                                       block.norm1.bias)
    f = torch.relu(torch.relu(y @ W(block.ffn1) + block.ffn1.bias)
                   @ W(block.ffn2) + block.ffn2.bias)
    return torch.nn.functional.layer_norm(y + f, (D, ), block.norm2.weight,
                                          block.norm2.bias)


def test_block_equals_dense_formula_and_subtracts_before_softmax():
    torch.manual_seed(0)
    block = CounterfactualAttention(12)
    with torch.no_grad():  # non-trivial LayerNorms and biases
        for p in (block.norm1.weight, block.norm2.bias, block.ffn1.bias):
            p.normal_()
    x, x_int = torch.randn(7, 12), torch.randn(7, 12)
    torch.testing.assert_close(block(x, x_int), dense_block(block, x, x_int))
    torch.testing.assert_close(block(x), dense_block(block, x))
    # subtracting the intervention scores changes the weights: not the same
    # as softmax(S) - softmax(S_c) or as ignoring S_c
    assert not torch.allclose(block(x, x_int), block(x), atol=1e-4)
    s, s_c = block.scores(x), block.scores(x) - block.scores(x, x_int)
    torch.testing.assert_close(block.scores(x, x_int), s - s_c)


def test_rows_interact_unless_diagonal():
    torch.manual_seed(1)
    block = CounterfactualAttention(8)
    x, x_int = torch.randn(5, 8), torch.randn(5, 8)
    full = block(x, x_int)
    changed = x.clone()
    changed[4] += 1.0
    # attention across the batch: row 0 depends on row 4
    assert not torch.allclose(block(changed, x_int)[0], full[0])
    diag = block(x, x_int, diagonal=True)
    torch.testing.assert_close(block(changed, x_int, diagonal=True)[:4],
                               diag[:4])
    # diagonal = each row on its own (a batch of one)
    single = torch.cat([block(x[i:i + 1], x_int[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(diag, single)
    with pytest.raises(ValueError, match='x_int'):
        block(x, x_int[:3])


def test_encoder_shares_blocks_and_keeps_intervention_inputs_fixed():
    torch.manual_seed(2)
    enc = CounterfactualEncoder(6, 4, num_blocks=3)
    seen = []
    for block in enc.blocks:
        block.register_forward_pre_hook(
            lambda mod, args: seen.append(args[1] if len(args) > 1 else None))
    x_pos, x_int, x_neg = (torch.randn(5, 6) for _ in range(3))
    m_pos, m_neg = enc(x_pos, x_int, x_neg)
    # positive branch: every block gets the original intervention inputs;
    # negative branch: none
    assert len(seen) == 6
    assert all(s is x_int for s in seen[:3])
    assert all(s is None for s in seen[3:])
    assert m_pos.shape == m_neg.shape == (5, 4)
    assert (m_pos >= 0).all() and (m_neg >= 0).all()
    # the same block weights serve both branches; the heads are separate
    m_neg.sum().backward()
    assert enc.blocks[0].value.weight.grad is not None
    assert enc.blocks[0].query_int.weight.grad is None  # S_c: positive only
    assert enc.pos_head.weight.grad is None
    expected = x_neg
    for block in enc.blocks:
        expected = dense_block(block, expected)
    torch.testing.assert_close(
        m_neg, torch.relu(expected @ enc.neg_head.weight.t()))
    with pytest.raises(ValueError, match='num_blocks'):
        CounterfactualEncoder(6, 4, num_blocks=0)


def test_leading_dimensions_are_independent_sets():
    torch.manual_seed(3)
    block = CounterfactualAttention(5)
    x, x_int = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    stacked = torch.stack([block(x[i], x_int[i]) for i in range(3)])
    torch.testing.assert_close(block(x, x_int), stacked)
