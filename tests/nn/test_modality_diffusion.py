import pytest
import torch

from pyg_mmrec.nn import GaussianDiffusion, ModalityDiffusion


def make(guidance='trained', mixed_precision=False):
    torch.manual_seed(0)
    return ModalityDiffusion(
        num_items=5, modalities=['image', 'text'], guide_channels=4,
        hidden_channels=8, time_channels=4, dropout=0.0,
        diffusion=GaussianDiffusion(), guidance_channels=3,
        guidance=guidance, e_loss=0.1,
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
                              GaussianDiffusion(), 3, 'trained', 0.1)
    feats['audio'] = torch.randn(5, 4)
    torch.testing.assert_close(three.guides(feats)['audio'],
                               (feats['image'] + feats['text']) / 2)
    one = ModalityDiffusion(5, ['image'], 4, 8, 4, 0.0, GaussianDiffusion(),
                            3, 'trained', 0.1)
    assert torch.equal(one.guides(feats)['image'], feats['image'])


@pytest.mark.parametrize('guidance', ['trained', 'random', 'none'])
def test_loss_trains_the_denoiser_and_only_a_trained_guidance(guidance):
    module = make(guidance)
    x0 = torch.bernoulli(torch.full((3, 5), 0.4))
    guide, feature, item_emb = (torch.randn(5, 4), torch.randn(5, 4),
                                torch.randn(5, 4))
    loss = module.loss('image', x0, guide, feature, item_emb)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in
               module.denoisers['image'].parameters())
    assert all(p.grad is None for p in module.denoisers['text'].parameters())
    assert (module.guidance is not None) == (guidance == 'trained')
    if guidance == 'trained':
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
    assert "guidance='trained'" in repr(module)


def test_unguided_loss_is_diffmms():
    # DiffMM: the denoiser reads x_t; SNR-weighted MSE + e * MSI, nothing
    # else (the same noise and steps drawn again from the same seed).
    module = make('none')
    x0 = torch.bernoulli(torch.full((4, 5), 0.4))
    guide, feature, item_emb = (torch.randn(5, 4), torch.randn(5, 4),
                                torch.randn(5, 4))
    torch.manual_seed(3)
    loss = module.loss('image', x0, guide, feature, item_emb)
    torch.manual_seed(3)
    proc = module.process
    t = proc.sample_timesteps(4, device=x0.device)
    x_hat = module.denoisers['image'](proc.q_sample(x0, t), t)
    diff = proc.loss_weight(t) * (x0 - x_hat).pow(2).mean(1)
    msi = (x_hat @ feature - x0 @ item_emb).pow(2).mean(1)
    torch.testing.assert_close(loss, diff.mean() + 0.1 * msi.mean())
    with pytest.raises(ValueError, match="'guidance'"):
        make('trained_once')
