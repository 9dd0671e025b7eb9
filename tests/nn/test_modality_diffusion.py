import pytest
import torch

from pyg_mmrec.nn import GaussianDiffusion, ModalityDiffusion


def make(trained_guidance=True, mixed_precision=False):
    torch.manual_seed(0)
    return ModalityDiffusion(
        num_items=5, modalities=['image', 'text'], guide_channels=4,
        hidden_channels=8, time_channels=4, dropout=0.0,
        diffusion=GaussianDiffusion(), guidance_channels=3,
        trained_guidance=trained_guidance, e_loss=0.1,
        mixed_precision=mixed_precision)


@pytest.mark.parametrize('k', [1, 2])
def test_generate_keeps_each_rows_top_denoised_items_in_eval_mode(k):
    module = make()
    module.train()
    x0 = torch.bernoulli(torch.full((6, 5), 0.4))
    for m, den in module.denoisers.items():
        with torch.no_grad():
            expected = module.process.p_sample(den.eval(), x0)
        den.train()
        assert torch.equal(module.denoise(m, x0), expected)
        assert den.training  # the mode is restored
        assert torch.equal(module.generate(m, x0, k),
                           expected.topk(k, dim=1).indices)


def test_guides_are_the_other_modalities_mean():
    module = make()
    feats = {'image': torch.randn(5, 4), 'text': torch.randn(5, 4)}
    guides = module.guides(feats)
    assert torch.equal(guides['image'], feats['text'])
    assert torch.equal(guides['text'], feats['image'])
    three = ModalityDiffusion(5, ['image', 'text', 'audio'], 4, 8, 4, 0.0,
                              GaussianDiffusion(), 3, True, 0.1)
    feats['audio'] = torch.randn(5, 4)
    torch.testing.assert_close(three.guides(feats)['audio'],
                               (feats['image'] + feats['text']) / 2)
    one = ModalityDiffusion(5, ['image'], 4, 8, 4, 0.0, GaussianDiffusion(),
                            3, True, 0.1)
    assert torch.equal(one.guides(feats)['image'], feats['image'])


@pytest.mark.parametrize('trained_guidance', [True, False])
def test_loss_trains_the_denoiser_and_only_a_trained_guidance(
        trained_guidance):
    module = make(trained_guidance)
    x0 = torch.bernoulli(torch.full((3, 5), 0.4))
    guide, feature, item_emb = (torch.randn(5, 4), torch.randn(5, 4),
                                torch.randn(5, 4))
    loss = module.loss('image', x0, guide, feature, item_emb)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in
               module.denoisers['image'].parameters())
    assert all(p.grad is None for p in module.denoisers['text'].parameters())
    assert (module.guidance is not None) == trained_guidance
    if trained_guidance:
        assert all(p.grad is not None for p in module.guidance.parameters())


def test_mixed_precision_runs_the_denoisers_in_bfloat16():
    x0 = torch.bernoulli(torch.full((3, 5), 0.4))
    guide, feature, item_emb = (torch.randn(5, 4), torch.randn(5, 4),
                                torch.randn(5, 4))
    for mixed in (False, True):
        module = make(mixed_precision=mixed)
        dtypes = []
        module.denoisers['image'].register_forward_hook(
            lambda mod, args, out: dtypes.append(out.dtype))
        loss = module.loss('image', x0, guide, feature, item_emb)
        assert torch.isfinite(loss) and loss.dtype == torch.float32
        module.denoise('image', x0)
        expected = torch.bfloat16 if mixed else torch.float32
        assert dtypes and all(d == expected for d in dtypes)
    assert 'trained_guidance=True' in repr(module)
