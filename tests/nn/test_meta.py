import pytest
import torch
import torch.nn.functional as F

from pyg_mmrec.nn import MetaLowRankTransform, orthogonality_loss


def reference(module, knowledge, z):
    # node by node, as the formula reads
    d, r = module.channels, module.rank
    kappa = module.meta(knowledge)
    t1 = torch.stack([F.normalize(module.mlp1(k), dim=0).view(d, r)
                      for k in kappa])
    t2 = torch.stack([F.normalize(module.mlp2(k), dim=0).view(r, d)
                      for k in kappa])
    b1, b2 = t1.mean(0), t2.mean(0)
    out = []
    for n in range(z.size(0)):
        w1 = torch.softmax(t1[n] + b1, dim=0)  # over d
        w2 = torch.softmax(t2[n] + b2, dim=0)  # over r
        out.append((z[n] @ w1) @ w2)
    return torch.stack(out)


@pytest.mark.parametrize('rank', [1, 3])
def test_low_rank_transform_matches_the_formula(rank):
    torch.manual_seed(0)
    module = MetaLowRankTransform(8, 4, rank)
    knowledge, z = torch.randn(6, 8), torch.randn(6, 4)
    torch.testing.assert_close(module(knowledge, z),
                               reference(module, knowledge, z))


@pytest.mark.parametrize('detach', [False, True])
def test_detached_knowledge_leaves_the_meta_layer_untrained(detach):
    torch.manual_seed(1)
    module = MetaLowRankTransform(8, 4, 2, detach_knowledge=detach)
    knowledge = torch.randn(6, 8, requires_grad=True)
    module(knowledge, torch.randn(6, 4)).sum().backward()
    assert (module.meta.weight.grad is None) == detach
    assert (knowledge.grad is None) == detach
    assert module.mlp1[0].weight.grad is not None


def test_orthogonality_loss_by_hand():
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # centred already
    y = torch.tensor([[0.0, 2.0], [0.0, -2.0]])
    # rows normalised: x~ = [[1, 0], [-1, 0]], y~ = [[0, 1], [0, -1]];
    # x~^T y~ = [[0, 2], [0, 0]] -> mean of squares = 4 / 4
    assert float(orthogonality_loss(x, y, eps=0.0)) == pytest.approx(1.0)
    assert float(orthogonality_loss(x, torch.tensor(
        [[3.0, 1.0], [3.0, 1.0]]))) == pytest.approx(0.0)  # constant: 0
    # the row norms carry no gradient
    torch.manual_seed(0)
    a = torch.randn(5, 3, requires_grad=True)
    b = torch.randn(5, 3)
    orthogonality_loss(a, b).backward()

    def manual(x, detach):
        x = x - x.mean(0)
        norm = x.norm(dim=1, keepdim=True)
        return x / ((norm.detach() if detach else norm) + 1e-6)

    grads = []
    for detach in (True, False):
        x = a.detach().clone().requires_grad_()
        yb = manual(b, True)
        (manual(x, detach).t() @ yb).pow(2).mean().backward()
        grads.append(x.grad)
    torch.testing.assert_close(a.grad, grads[0])
    assert not torch.allclose(grads[0], grads[1], atol=1e-4)
    with pytest.raises(ValueError, match=r'\[B, d\]'):
        orthogonality_loss(a, torch.randn(5, 2))
