import pytest
import torch

from pyg_mmrec.graphs import user_item_matrix
from pyg_mmrec.nn import GaussianDiffusion, ModalityDiffusion


def make(trained_guidance=True, rebuild_k=2, keep_rate=1.0):
    torch.manual_seed(0)
    return ModalityDiffusion(
        num_users=6, num_items=5, modalities=['image', 'text'],
        guide_channels=4, hidden_channels=8, time_channels=4, dropout=0.0,
        diffusion=GaussianDiffusion(), guidance_channels=3,
        trained_guidance=trained_guidance, e_loss=0.1, rebuild_k=rebuild_k,
        keep_rate=keep_rate)


def test_rebuild_keeps_each_users_top_denoised_items():
    module = make()
    edge_index = torch.tensor([[0, 0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 0, 1]])
    rows = user_item_matrix(edge_index, 6, 5)
    with pytest.raises(RuntimeError, match='rebuild'):
        module.graph('image')
    module.rebuild(rows, block_size=4)
    dense = rows.to_dense()
    for m, den in module.denoisers.items():
        with torch.no_grad():
            expected = module.process.p_sample(den.eval(), dense)
        top = expected.topk(2, dim=1).indices
        assert torch.equal(getattr(module, f'generated_{m}'), top)
        adj, adj_t = module.graph(m)
        # 2 items per user both ways, plus one self-loop per node
        assert adj._nnz() == 2 * 6 * 2 + 6 + 5
        assert torch.equal(adj_t.to_dense(), adj.to_dense().t())
    # the graphs are derived: a loaded state rebuilds the same ones
    other = make()
    other.load_state_dict(module.state_dict())
    assert other.graph_image is None
    assert torch.equal(other.graph('image')[0].to_dense(),
                       module.graph('image')[0].to_dense())


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


def test_bad_arguments():
    with pytest.raises(ValueError, match='rebuild_k'):
        make(rebuild_k=6)
    with pytest.raises(ValueError, match='keep_rate'):
        make(keep_rate=0.0)
