import pytest
import torch

from pyg_mmrec.nn import FlipTransformerDenoiser


def reference_decoder(layers, d=16, heads=4, ff=24, dropout=0.2, seed=0):
    torch.manual_seed(seed)
    layer = torch.nn.TransformerDecoderLayer(d, heads, ff, dropout,
                                             batch_first=True)
    dec = torch.nn.TransformerDecoder(layer, layers)
    for p in dec.parameters():  # not PyTorch's init: every weight matters
        torch.nn.init.normal_(p, std=0.5)
    return dec


@pytest.mark.parametrize('layers', [1, 3])
@pytest.mark.parametrize('train', [False, True])
def test_length_one_decoder_equals_torch_transformer_decoder(layers, train):
    dropout = 0.0 if train else 0.2  # train mode: compare without dropout
    den = FlipTransformerDenoiser(30, hidden_channels=16, num_layers=layers,
                                  heads=4, ff_channels=24, head_channels=8,
                                  dropout=dropout)
    dec = reference_decoder(layers, dropout=dropout)
    den.load_transformer_decoder(dec)
    den.train(train), dec.train(train)
    g = torch.Generator().manual_seed(1)
    n = 20  # more rows than channels: the fused product in eval mode
    x = (torch.rand(n, 30, generator=g) < 0.3).float()
    t = torch.randint(0, 5, (n, ), generator=g)
    h = den.adaln_input(x, t)
    ref = dec(h[:, None], torch.zeros(n, 1, 16))[:, 0]
    out = h
    for layer in den.layers:
        out = layer(out)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # the memory is zero: another memory gives another output
    other = dec(h[:, None], torch.ones(n, 1, 16))[:, 0]
    assert not torch.allclose(other, ref, atol=1e-3)
    assert den(x, t).shape == (n, 30)
    few = h[:5]  # fewer rows than channels: the two products
    for layer in den.layers:
        few = layer(few)
    torch.testing.assert_close(few, out[:5], atol=1e-5, rtol=1e-5)


def test_attention_dropout_keeps_or_zeroes_whole_heads():
    den = FlipTransformerDenoiser(12, hidden_channels=8, num_layers=1,
                                  heads=4, ff_channels=8, head_channels=4,
                                  dropout=0.5)
    layer = den.layers[0]
    torch.manual_seed(0)
    v = torch.ones(1000, 8)
    out = layer._heads_dropped(v).view(1000, 4, 2)
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert torch.all(out[..., 0] == out[..., 1])  # per head, not per unit
    assert abs(float((out > 0).float().mean()) - 0.5) < 0.05
    layer.eval()
    assert torch.equal(layer._heads_dropped(v), v)


def test_init_gradients_and_bad_arguments():
    den = FlipTransformerDenoiser(20, hidden_channels=16, num_layers=2,
                                  heads=4, ff_channels=16, head_channels=8)
    assert torch.all(den.lin_in.bias == 0.01)
    assert torch.all(den.layers[0].self_value.bias == 0)
    x = torch.zeros(3, 20)
    den(x, torch.tensor([0, 1, 2])).sum().backward()
    assert all(p.grad is not None for p in den.parameters())
    for kwargs, match in (({'hidden_channels': 10, 'heads': 4}, 'divisible'),
                          ({'dropout': 1.0}, 'dropout'),
                          ({'num_layers': -1}, 'num_layers')):
        with pytest.raises(ValueError, match=match):
            FlipTransformerDenoiser(20, **kwargs)
    with pytest.raises(ValueError, match=r'\[B, 20\]'):
        den(torch.zeros(3, 19), torch.tensor([0]))
    with pytest.raises(ValueError, match='layers'):
        den.load_transformer_decoder(reference_decoder(3))
