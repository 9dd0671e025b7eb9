import pytest
import torch
import torch.nn.functional as F

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.nn import ModalityFeatures


def tables(num_items=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {'image': torch.randn(num_items, 6, generator=gen),
            'text': torch.randn(num_items, 4, generator=gen)}


@pytest.mark.parametrize('projection', ['linear', 'matrix', 'block',
                                        'identity'])
@pytest.mark.parametrize('items', [None, torch.tensor([4, 0, 4, 2])])
def test_projected_features_of_all_items_or_given_ones(projection, items):
    x = tables()
    module = ModalityFeatures(x, 3, projection=projection).eval()
    out = module(items)
    assert list(out) == ['image', 'text']
    rows = 7 if items is None else 4
    for m, f in out.items():
        width = x[m].size(1) if projection == 'identity' else 3
        assert f.shape == (rows, width)
        expected = module.projections[m](x[m] if items is None
                                         else x[m][items])
        assert torch.equal(f, expected)
        if projection in ('linear', 'matrix'):
            lin = module.projections[m]
            torch.testing.assert_close(
                f, x[m][items if items is not None else slice(None)]
                @ lin.weight.t() + (0 if lin.bias is None else lin.bias))
    has_bias = projection in ('linear', 'block')
    assert ('projections.image.0.bias' in module.state_dict()
            or 'projections.image.bias' in module.state_dict()) == has_bias


def test_tables_are_non_persistent_buffers_shared_with_the_data():
    data = make_synthetic(num_users=30, num_items=20, seed=0)
    module = ModalityFeatures(data, 5, projection='matrix')
    assert module.modalities == ['image', 'text']
    assert module.x_image is data['item'].x_image  # no copy
    assert torch.equal(module.raw('text', torch.tensor([3])),
                       data['item'].x_text[3:4])
    keys = set(module.state_dict())
    assert keys == {'projections.image.weight', 'projections.text.weight'}
    assert {n for n, _ in module.named_buffers()} == {'x_image', 'x_text'}
    assert module.in_channels == {'image': 64, 'text': 32}


@pytest.mark.parametrize('projection,init', [('matrix', 'xavier_uniform'),
                                             ('matrix', 'xavier_normal'),
                                             ('linear', 'xavier_uniform'),
                                             ('block', 'xavier_uniform')])
def test_construction_draws_as_pytorchs_layers_and_reset_reinitialises(
        projection, init):
    # The constructor draws each weight once, as many numbers as PyTorch's
    # own layers (so a model composing it keeps its random stream), and
    # reset_parameters() draws them again.
    x = tables()
    torch.manual_seed(0)
    module = ModalityFeatures(x, 16, projection=projection, weight_init=init)
    after_module = torch.get_rng_state()
    torch.manual_seed(0)
    for m in x:
        torch.nn.Linear(x[m].size(1), 16, bias=projection != 'matrix')
    assert torch.equal(after_module, torch.get_rng_state())
    before = {k: v.clone() for k, v in module.state_dict().items()}
    torch.manual_seed(1)
    module.reset_parameters()
    changed = [k for k in before
               if not torch.equal(before[k], module.state_dict()[k])]
    assert any(k.endswith('weight') for k in changed)
    torch.manual_seed(1)
    again = ModalityFeatures(x, 16, projection=projection, weight_init=init)
    torch.manual_seed(1)
    again.reset_parameters()
    for k, v in module.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    if projection == 'matrix':  # xavier bounds / scale
        w = module.projections['image'].weight
        bound = (6 / (6 + 16)) ** 0.5
        if init == 'xavier_uniform':
            assert float(w.abs().max()) <= bound
    if projection == 'block':
        bn = module.projections['image'][1]
        assert torch.equal(bn.running_mean, torch.zeros(16))
        assert torch.equal(bn.weight, torch.ones(16))


def test_per_modality_projection_and_activation():
    x = tables()
    module = ModalityFeatures(
        x, 3, projection={'image': 'matrix', 'text': 'linear'},
        activation={'image': 'leaky_relu', 'text': None})
    out = module()
    lin_i, lin_t = module.projections['image'], module.projections['text']
    assert lin_i.bias is None and lin_t.bias is not None
    torch.testing.assert_close(out['image'],
                               F.leaky_relu(lin_i(x['image']), 0.2))
    torch.testing.assert_close(out['text'], lin_t(x['text']))
    assert 'activation=' in repr(module) and "'matrix'" in repr(module)


def test_dtype_shift_and_normalize_transform_the_tables_once():
    x = {m: t.double() for m, t in tables().items()}
    module = ModalityFeatures(x, 3, dtype=torch.float32,
                              shift={'image': 0.01}, normalize=True)
    image = x['image'].float()
    image = image - 0.01 * torch.linalg.svdvals(image).sum()
    torch.testing.assert_close(module.x_image, F.normalize(image, dim=1))
    torch.testing.assert_close(module.x_text,
                               F.normalize(x['text'].float(), dim=1))
    assert module.x_image.dtype == torch.float32
    plain = ModalityFeatures(x, 3)
    assert plain.x_text is x['text']
    text = repr(module)
    assert text.startswith("ModalityFeatures({'image': 6, 'text': 4}, "
                           "out_channels=3, projection='linear'")
    assert 'shift=' in text and 'normalize=True' in text


def test_block_projection_uses_batch_statistics_in_training():
    x = tables(num_items=9)
    module = ModalityFeatures(x, 4, projection='block', dropout=0.0)
    full = module.project('image')
    # BatchNorm in training mode: a row subset normalises over itself
    assert not torch.allclose(module.project('image', torch.arange(3)),
                              full[:3])
    module.eval()
    torch.testing.assert_close(module.project('image', torch.arange(3)),
                               module.project('image')[:3])


@pytest.mark.parametrize('kwargs,match', [
    ({'projection': 'mlp'}, 'projection'),
    ({'projection': {'image': 'linear'}}, 'projection'),
    ({'activation': 'relu'}, 'activation'),
    ({'weight_init': 'orthogonal'}, 'weight_init'),
    ({'shift': {'audio': 0.1}}, 'audio'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModalityFeatures(tables(), 3, **kwargs)
    with pytest.raises(ValueError, match='at least one'):
        ModalityFeatures({}, 3)
